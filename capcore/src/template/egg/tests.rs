//! Tests for the egg importer on small hand-made eggs of each format; the real corpus is in
//! `tests/egg_corpus.rs`.

use super::*;

/// A `PTDL_v2` egg as Pterodactyl exports it, with `config` as JSON-encoded strings.
fn ptdl_v2() -> Value {
    json!({
        "_comment": "DO NOT EDIT",
        "meta": { "version": "PTDL_v2", "update_url": null },
        "exported_at": "2024-01-01T00:00:00+00:00",
        "name": "Paper",
        "author": "parker@example.com",
        "description": null,
        "features": ["eula"],
        "docker_images": { "Java 21": "ghcr.io/yolks:java_21", "Java 17": "ghcr.io/yolks:java_17" },
        "file_denylist": [],
        "startup": "java -Xms128M -Xmx{{SERVER_MEMORY}}M -jar {{SERVER_JARFILE}}",
        "config": {
            "files": "{\r\n \"server.properties\": {\"parser\": \"properties\", \"find\": {\"server-port\": \"{{server.build.default.port}}\", \"enable-query\": \"true\", \"a-number\": 5}}, \"/config/x.yml\": {\"parser\": \"yml\", \"find\": {\"b\": {\"nested\": true}}}}",
            "startup": "{\"done\": \")! For help, type \", \"userInteraction\": [\"eula\"]}",
            "logs": "{}",
            "stop": "stop"
        },
        "scripts": { "installation": { "script": "#!/bin/ash\necho hi", "container": "ghcr.io/installers:alpine", "entrypoint": "ash" } },
        "variables": [{
            "name": "Server Jar File",
            "description": "The jar",
            "env_variable": "SERVER_JARFILE",
            "default_value": "server.jar",
            "user_viewable": true,
            "user_editable": false,
            "rules": "required|regex:/^([\\w\\d._-]+)(\\.jar)$/",
            "field_type": "text"
        }]
    })
}

fn import_value(egg: &Value) -> Result<TemplateSpec, EggError> {
    import(&serde_json::to_vec(egg).unwrap())
}

fn round_trips(spec: &TemplateSpec) {
    let again = import_value(&export(spec)).unwrap();
    assert_eq!(TemplateSpec { source_format: spec.source_format.clone(), ..again }, *spec);
}

#[test]
fn imports_ptdl_v2() {
    let spec = import_value(&ptdl_v2()).unwrap();
    assert_eq!(spec.name, "Paper");
    assert_eq!(spec.description, "");
    assert_eq!(spec.source_format, "PTDL_v2");
    assert_eq!(
        spec.images,
        [
            TemplateImage { label: "Java 21".into(), image: "ghcr.io/yolks:java_21".into() },
            TemplateImage { label: "Java 17".into(), image: "ghcr.io/yolks:java_17".into() },
        ],
        "the order of docker_images is kept: the first is the default"
    );
    assert_eq!(spec.stop, StopAction::Command("stop".into()));
    assert_eq!(spec.ready_patterns, [ReadyPattern::Contains(")! For help, type ".into())]);
    assert_eq!(
        spec.install,
        Some(InstallScript {
            script: "#!/bin/ash\necho hi".into(),
            image: "ghcr.io/installers:alpine".into(),
            entrypoint: "ash".into()
        })
    );
    assert_eq!(spec.config_files.len(), 2);
    let properties = &spec.config_files[0];
    assert_eq!((properties.path.as_str(), properties.parser), ("server.properties", ConfigParser::Properties));
    let keys: Vec<&str> = properties.replace.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["server-port", "enable-query", "a-number"], "find order is kept");
    assert_eq!(properties.replace[2].value, json!(5));
    let yaml = &spec.config_files[1];
    assert_eq!(
        (yaml.path.as_str(), yaml.parser),
        ("config/x.yml", ConfigParser::Yaml),
        "a leading / is the server root"
    );
    assert_eq!(yaml.replace[0].value, json!({"nested": true}));
    assert_eq!(spec.features, ["eula"]);
    let variable = &spec.variables[0];
    assert_eq!((variable.env.as_str(), variable.default.as_str()), ("SERVER_JARFILE", "server.jar"));
    assert!(variable.user_viewable && !variable.user_editable);
    assert_eq!(variable.rules, r"required|regex:/^([\w\d._-]+)(\.jar)$/");
    round_trips(&spec);
}

#[test]
fn imports_ptdl_v1_images_list() {
    let mut egg = ptdl_v2();
    egg["meta"]["version"] = json!("PTDL_v1");
    egg.as_object_mut().unwrap().remove("docker_images");
    egg["images"] = json!(["quay.io/a:1", "quay.io/b:2", "quay.io/a:1"]);
    egg["config"]["stop"] = json!("^C");
    let spec = import_value(&egg).unwrap();
    assert_eq!(spec.source_format, "PTDL_v1");
    let images: Vec<(&str, &str)> = spec.images.iter().map(|i| (i.label.as_str(), i.image.as_str())).collect();
    assert_eq!(images, [("quay.io/a:1", "quay.io/a:1"), ("quay.io/b:2", "quay.io/b:2")]);
    assert_eq!(spec.stop, StopAction::Signal(StopSignal::Sigint));
    round_trips(&spec);
}

const PLCN_V3_YAML: &str = r#"
_comment: 'DO NOT EDIT: FILE GENERATED AUTOMATICALLY BY PANEL'
meta:
  version: PLCN_v3
  update_url: null
name: Paper
author: parker@example.com
uuid: 5da37ef6-58da-4169-90a6-e683e1721247
description: 'High performance'
image: 'data:image/svg+xml;base64,PHN2Zz4='
tags:
  - minecraft
features: null
docker_images:
  'Java 21': 'ghcr.io/pelican-eggs/yolks:java_21'
file_denylist: {  }
startup_commands:
  Default: 'java -jar {{SERVER_JARFILE}}'
config:
  files:
    server.properties:
      parser: properties
      find:
        server-ip: ''
        server-port: '{{server.allocations.default.port}}'
  startup:
    done:
      - ')! For help, type '
      - 'regex:^Done \(\d+'
  logs: {  }
  stop: '^SIGTERM'
scripts:
  installation:
    script: ''
    container: 'ghcr.io/pelican-eggs/installers:alpine'
    entrypoint: ash
variables:
  -
    name: 'Build Number'
    env_variable: BUILD_NUMBER
    default_value: latest
    user_viewable: true
    user_editable: true
    rules:
      - required
      - string
      - 'max:20'
    sort: 2
  -
    name: 'Server Jar File'
    description: 'The jar'
    env_variable: SERVER_JARFILE
    default_value: server.jar
    user_viewable: true
    user_editable: true
    rules:
      - required
      - 'regex:/^(a|b)\.jar$/'
    sort: 1
"#;

#[test]
fn imports_plcn_v3_yaml() {
    let spec = import(PLCN_V3_YAML.as_bytes()).unwrap();
    assert_eq!(spec.source_format, "PLCN_v3");
    assert_eq!(spec.startup, "java -jar {{SERVER_JARFILE}}");
    assert_eq!(
        spec.images,
        [TemplateImage { label: "Java 21".into(), image: "ghcr.io/pelican-eggs/yolks:java_21".into() }]
    );
    assert_eq!((spec.features.len(), spec.file_denylist.len()), (0, 0));
    assert_eq!(spec.stop, StopAction::Signal(StopSignal::Sigterm));
    assert_eq!(
        spec.ready_patterns,
        [ReadyPattern::Contains(")! For help, type ".into()), ReadyPattern::Regex(r"^Done \(\d+".into())]
    );
    assert_eq!(spec.install, None, "an empty script is no install step");
    assert_eq!(spec.config_files[0].replace[1].value, json!("{{server.allocations.default.port}}"));
    let envs: Vec<&str> = spec.variables.iter().map(|v| v.env.as_str()).collect();
    assert_eq!(envs, ["SERVER_JARFILE", "BUILD_NUMBER"], "sorted by `sort`");
    assert_eq!(spec.variables[0].rules, r"required|regex:/^(a|b)\.jar$/", "list rules are joined with |");
    assert_eq!(spec.variables[1].rules, "required|string|max:20");
    round_trips(&spec);
}

#[test]
fn startup_commands_without_default_is_refused() {
    let yaml = PLCN_V3_YAML
        .replace("  Default: 'java -jar {{SERVER_JARFILE}}'", "  A: 'java -jar {{SERVER_JARFILE}}'\n  B: './b'");
    let err = import(yaml.as_bytes()).unwrap_err();
    assert_eq!(err.to_string(), "startup_commands has several entries and none is named Default: A, B");
    let yaml = PLCN_V3_YAML
        .replace("  Default: 'java -jar {{SERVER_JARFILE}}'", "  Default: 'java -jar {{SERVER_JARFILE}}'\n  B: './b'");
    assert_eq!(import(yaml.as_bytes()).unwrap().startup, "java -jar {{SERVER_JARFILE}}");
}

#[test]
fn stop_actions() {
    for (stop, action) in [
        ("^C", StopAction::Signal(StopSignal::Sigint)),
        ("^c", StopAction::Signal(StopSignal::Sigint)),
        ("^^C", StopAction::Signal(StopSignal::Sigint)),
        ("^SIGKILL", StopAction::Signal(StopSignal::Sigkill)),
        ("^INT", StopAction::Signal(StopSignal::Sigint)),
        ("^sigterm", StopAction::Signal(StopSignal::Sigterm)),
        ("shutdown; exit;", StopAction::Command("shutdown; exit;".into())),
    ] {
        let mut egg = ptdl_v2();
        egg["config"]["stop"] = json!(stop);
        let spec = import_value(&egg).unwrap();
        assert_eq!(spec.stop, action, "{stop}");
        round_trips(&spec);
    }
}

/// Imports `egg` after `change` and returns the error text.
fn refusal(change: impl FnOnce(&mut Value)) -> String {
    let mut egg = ptdl_v2();
    change(&mut egg);
    import_value(&egg).unwrap_err().to_string()
}

#[test]
fn refusals_are_specific() {
    assert!(matches!(import(b"key: [unclosed"), Err(EggError::NotJsonOrYaml(_))));
    assert!(matches!(import(b"{\"settings\": {\"motd\": 1}}"), Err(EggError::NotAnEgg)));
    assert!(matches!(import(b"just text"), Err(EggError::NotAnEgg)));
    assert_eq!(refusal(|e| e["meta"]["version"] = json!("PTDL_v9")), "unsupported egg version `PTDL_v9`");
    assert_eq!(refusal(|e| e["name"] = Value::Null), "missing field `name`");
    assert_eq!(refusal(|e| e["config"]["stop"] = json!("")), "missing field `config.stop`");
    assert_eq!(refusal(|e| e["config"]["stop"] = json!("^X")), "unknown stop signal `^X`");
    assert_eq!(refusal(|e| e["features"] = json!({"a": 1})), "field `features` must be a list of strings");
    assert_eq!(refusal(|e| e["config"]["files"] = json!("{nope")), "field `config.files` holds malformed json");
    assert_eq!(
        refusal(|e| e["config"]["files"] = json!("{\"a.txt\": {\"parser\": \"toml\", \"find\": {}}}")),
        "config file `a.txt` uses unknown parser `toml`"
    );
    assert_eq!(
        refusal(|e| e["variables"][0]["rules"] = json!("required|exists:x")),
        "variable `SERVER_JARFILE` has bad rules: unknown rule `exists`"
    );
    assert_eq!(
        refusal(|e| e["startup"] = json!("java -jar '{{SERVER_JARFILE}}")),
        "bad startup command: unterminated single quote"
    );
    assert_eq!(
        refusal(|e| e["startup"] = json!("java -jar {{SERVER_JARFILE}} {{CLIENT_MODS}}")),
        "startup uses placeholder `CLIENT_MODS`, which is neither a variable of the egg nor built in"
    );
    assert_eq!(
        refusal(|e| {
            let twin = e["variables"][0].clone();
            e["variables"].as_array_mut().unwrap().push(twin);
        }),
        "invalid template: variables[1].env: `SERVER_JARFILE` is defined twice"
    );
    assert_eq!(
        refusal(|e| e["variables"][0]["user_viewable"] = json!("maybe")),
        "field `variables[0].user_viewable` must be true or false"
    );
    assert_eq!(
        refusal(|e| e["variables"][0].as_object_mut().unwrap().clear()),
        "missing field `variables[0].env_variable`"
    );
}

#[test]
fn lenient_shapes() {
    let mut egg = ptdl_v2();
    egg["config"]["files"] = json!("[]");
    egg["config"]["startup"] = json!("");
    egg["file_denylist"] = json!("");
    egg["features"] = Value::Null;
    egg["variables"][0]["user_viewable"] = json!(1);
    egg["variables"][0]["default_value"] = json!(25565);
    egg["variables"][0]["rules"] = json!(["required", "string"]);
    let spec = import_value(&egg).unwrap();
    assert_eq!((spec.config_files.len(), spec.ready_patterns.len()), (0, 0));
    assert_eq!(spec.variables[0].default, "25565");
    assert!(spec.variables[0].user_viewable);
    round_trips(&spec);
}

#[test]
fn export_writes_ptdl_v2_with_encoded_config() {
    let spec = import(PLCN_V3_YAML.as_bytes()).unwrap();
    let egg = export(&spec);
    assert_eq!(egg["meta"]["version"], "PTDL_v2");
    assert_eq!(egg["config"]["stop"], "^SIGTERM");
    let files: Value = serde_json::from_str(egg["config"]["files"].as_str().unwrap()).unwrap();
    assert_eq!(files["server.properties"]["parser"], "properties");
    let startup: Value = serde_json::from_str(egg["config"]["startup"].as_str().unwrap()).unwrap();
    assert_eq!(startup, json!({"done": [")! For help, type ", r"regex:^Done \(\d+"]}));
    assert_eq!(egg["docker_images"], json!({"Java 21": "ghcr.io/pelican-eggs/yolks:java_21"}));
    assert_eq!(egg["variables"][1]["rules"], "required|string|max:20");
    assert_eq!(egg["scripts"]["installation"]["script"], "");
}
