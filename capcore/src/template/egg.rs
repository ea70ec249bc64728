//! The egg importer and exporter: Pterodactyl (`PTDL_v1`, `PTDL_v2`) and Pelican (`PLCN_v1` to
//! `PLCN_v3`) eggs, JSON or YAML, to and from [`TemplateSpec`].
//!
//! Import is lenient about shape (a field may be a JSON-encoded string or an object, a list or
//! `{}`, `null` or absent) and strict about meaning: every variable's rules must parse, the startup
//! line must parse and use only defined variables or [`BUILTIN_VARIABLES`], the stop signal must
//! exist, and the spec must pass [`TemplateSpec::validate`]. Export writes `PTDL_v2` JSON, which
//! imports back to the same spec.
//!
//! Deliberately dropped on import, because nothing here uses them: `config.logs`,
//! `config.startup.userInteraction`, `field_type`, `uuid`, `tags`, `update_url`, `exported_at`
//! and Pelican's `image` (an icon, not a container image).

use super::command::{BUILTIN_VARIABLES, CommandError, StartupCommand};
use super::rules::{RuleError, RuleSet};
use super::{
    ConfigFile, ConfigParser, ConfigReplacement, InstallScript, ReadyPattern, StopAction, StopSignal, TemplateImage,
    TemplateSpec, TemplateVariable,
};
use crate::validate::ValidationError;
use serde_json::{Map, Value, json};

/// The egg formats [`import`] reads, by `meta.version`.
pub const SUPPORTED_VERSIONS: &[&str] = &["PTDL_v1", "PTDL_v2", "PLCN_v1", "PLCN_v2", "PLCN_v3"];

/// Why an egg cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum EggError {
    #[error("not json or yaml")]
    NotJsonOrYaml(#[source] serde_yaml::Error),
    #[error("not an egg: no meta.version")]
    NotAnEgg,
    #[error("unsupported egg version `{0}`")]
    UnsupportedVersion(String),
    #[error("missing field `{0}`")]
    MissingField(String),
    #[error("field `{field}` must be {expected}")]
    WrongType { field: String, expected: &'static str },
    #[error("field `{field}` holds malformed json")]
    EmbeddedJson {
        field: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("config file `{file}` uses unknown parser `{parser}`")]
    UnknownParser { file: String, parser: String },
    #[error("unknown stop signal `{0}`")]
    UnknownStopSignal(String),
    #[error("startup_commands has several entries and none is named Default: {0}")]
    NoDefaultStartup(String),
    #[error("bad startup command: {0}")]
    BadStartup(#[source] CommandError),
    #[error("startup uses placeholder `{0}`, which is neither a variable of the egg nor built in")]
    UndefinedPlaceholder(String),
    #[error("variable `{variable}` has bad rules: {source}")]
    BadRules {
        variable: String,
        #[source]
        source: RuleError,
    },
    #[error("invalid template: {0}")]
    Invalid(#[from] ValidationError),
}

/// Reads an egg (JSON, else YAML) into a validated spec.
pub fn import(bytes: &[u8]) -> Result<TemplateSpec, EggError> {
    let egg: Value = match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(_) => serde_yaml::from_slice(bytes).map_err(EggError::NotJsonOrYaml)?,
    };
    let version = egg.pointer("/meta/version").and_then(Value::as_str).ok_or(EggError::NotAnEgg)?;
    if !SUPPORTED_VERSIONS.contains(&version) {
        return Err(EggError::UnsupportedVersion(version.to_string()));
    }
    let config = &egg["config"];
    let mut spec = TemplateSpec {
        name: required_string(&egg, "name")?,
        description: optional_string(&egg["description"], "description")?,
        author: optional_string(&egg["author"], "author")?,
        startup: startup(&egg)?,
        images: images(&egg, version.starts_with("PTDL"))?,
        variables: variables(&egg["variables"])?,
        stop: stop(&config["stop"])?,
        ready_patterns: ready_patterns(&embedded(&config["startup"], "config.startup")?)?,
        install: install(&egg["scripts"]["installation"])?,
        config_files: config_files(&embedded(&config["files"], "config.files")?)?,
        features: string_list(&egg["features"], "features")?,
        file_denylist: string_list(&egg["file_denylist"], "file_denylist")?,
        source_format: version.to_string(),
        backup_hooks: None,
    };
    spec.file_denylist.retain(|path| !path.is_empty());
    let command = StartupCommand::parse(&spec.startup).map_err(EggError::BadStartup)?;
    for name in command.placeholders() {
        if !BUILTIN_VARIABLES.contains(&name.as_str()) && !spec.variables.iter().any(|v| v.env == name) {
            return Err(EggError::UndefinedPlaceholder(name));
        }
    }
    spec.validate()?;
    Ok(spec)
}

/// Writes a spec as a `PTDL_v2` egg, with `config` fields as the JSON-encoded strings eggs use.
pub fn export(spec: &TemplateSpec) -> Value {
    let stop = match &spec.stop {
        StopAction::Signal(StopSignal::Sigint) => "^C".to_string(),
        StopAction::Signal(signal) => format!("^{}", signal.name()),
        StopAction::Command(command) => command.clone(),
    };
    let done: Vec<String> = spec
        .ready_patterns
        .iter()
        .map(|p| match p {
            ReadyPattern::Contains(text) => text.clone(),
            ReadyPattern::Regex(regex) => format!("regex:{regex}"),
        })
        .collect();
    let startup = match done.as_slice() {
        [] => json!({}),
        [one] => json!({ "done": one }),
        many => json!({ "done": many }),
    };
    let files: Map<String, Value> = spec
        .config_files
        .iter()
        .map(|file| {
            let find: Map<String, Value> = file.replace.iter().map(|r| (r.key.clone(), r.value.clone())).collect();
            (file.path.clone(), json!({ "parser": file.parser.name(), "find": find }))
        })
        .collect();
    let images: Map<String, Value> =
        spec.images.iter().map(|i| (i.label.clone(), Value::from(i.image.as_str()))).collect();
    let (script, container, entrypoint) = match &spec.install {
        Some(install) => (install.script.as_str(), install.image.as_str(), install.entrypoint.as_str()),
        None => ("", "", "bash"),
    };
    let variables: Vec<Value> = spec
        .variables
        .iter()
        .map(|v| {
            json!({
                "name": v.name,
                "description": v.description,
                "env_variable": v.env,
                "default_value": v.default,
                "user_viewable": v.user_viewable,
                "user_editable": v.user_editable,
                "rules": v.rules,
                "field_type": "text",
            })
        })
        .collect();
    json!({
        "_comment": "exported by Ctrl-Alt-Play",
        "meta": { "version": "PTDL_v2", "update_url": null },
        "name": spec.name,
        "author": spec.author,
        "description": spec.description,
        "features": spec.features,
        "docker_images": images,
        "file_denylist": spec.file_denylist,
        "startup": spec.startup,
        "config": {
            "files": Value::Object(files).to_string(),
            "startup": startup.to_string(),
            "logs": "{}",
            "stop": stop,
        },
        "scripts": { "installation": { "script": script, "container": container, "entrypoint": entrypoint } },
        "variables": variables,
    })
}

fn wrong(field: impl Into<String>, expected: &'static str) -> EggError {
    EggError::WrongType { field: field.into(), expected }
}

fn required_string(object: &Value, key: &'static str) -> Result<String, EggError> {
    match &object[key] {
        Value::Null => Err(EggError::MissingField(key.to_string())),
        value => optional_string(value, key),
    }
}

/// A text field: absent or `null` is empty; numbers and booleans (hand-written YAML) as written.
fn optional_string(value: &Value, field: &str) -> Result<String, EggError> {
    match value {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(wrong(field, "a string")),
    }
}

/// A list of strings: also `null`, `{}` (PHP's empty array as an object) or a single string.
fn string_list(value: &Value, field: &str) -> Result<Vec<String>, EggError> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Object(map) if map.is_empty() => Ok(Vec::new()),
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items.iter().map(|item| optional_string(item, field)).collect(),
        _ => Err(wrong(field, "a list of strings")),
    }
}

/// `config.files` and `config.startup` are JSON-encoded strings in Pterodactyl exports and plain
/// objects in Pelican YAML; an empty string is nothing.
fn embedded(value: &Value, field: &'static str) -> Result<Value, EggError> {
    match value {
        Value::String(s) if s.trim().is_empty() => Ok(Value::Null),
        Value::String(s) => serde_json::from_str(s).map_err(|source| EggError::EmbeddedJson { field, source }),
        other => Ok(other.clone()),
    }
}

/// The entries of an object; `null` and `[]` (PHP's empty array) have none.
fn entries<'a>(value: &'a Value, field: &str) -> Result<Vec<(&'a String, &'a Value)>, EggError> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) if items.is_empty() => Ok(Vec::new()),
        Value::Object(map) => Ok(map.iter().collect()),
        _ => Err(wrong(field, "an object")),
    }
}

/// `startup`, or in `PLCN_v3` the `startup_commands` map: its only entry, or the one named Default.
fn startup(egg: &Value) -> Result<String, EggError> {
    if !egg["startup"].is_null() {
        return required_string(egg, "startup");
    }
    let commands = entries(&egg["startup_commands"], "startup_commands")?;
    let chosen = match commands.as_slice() {
        [] => return Err(EggError::MissingField("startup".into())),
        [(_, only)] => *only,
        many => match many.iter().find(|(name, _)| name.as_str() == "Default") {
            Some((_, command)) => *command,
            None => {
                let names: Vec<&str> = many.iter().map(|(name, _)| name.as_str()).collect();
                return Err(EggError::NoDefaultStartup(names.join(", ")));
            }
        },
    };
    optional_string(chosen, "startup_commands")
}

/// `docker_images` (label to image, or a list), else `images` (`PTDL_v1`), else a Pterodactyl `image`.
fn images(egg: &Value, pterodactyl: bool) -> Result<Vec<TemplateImage>, EggError> {
    let mut images = Vec::new();
    let mut push = |label: &str, image: &Value, field: &str| -> Result<(), EggError> {
        let image = optional_string(image, field)?;
        let entry = TemplateImage { label: label.to_string(), image };
        // A repeated list entry would collapse into one map key on export; keep it once.
        if !images.contains(&entry) {
            images.push(entry);
        }
        Ok(())
    };
    match (&egg["docker_images"], &egg["images"], &egg["image"]) {
        (Value::Object(map), _, _) => {
            for (label, image) in map {
                push(label, image, "docker_images")?;
            }
        }
        (Value::Array(list), _, _) | (Value::Null, Value::Array(list), _) => {
            for image in list {
                push(&optional_string(image, "images")?, image, "images")?;
            }
        }
        (Value::Null, Value::Null, Value::String(image)) if pterodactyl => {
            push(image, &Value::from(image.as_str()), "image")?;
        }
        (Value::Null, Value::Null, _) => {}
        (Value::Null, _, _) => return Err(wrong("images", "a list of strings")),
        _ => return Err(wrong("docker_images", "an object of label to image")),
    }
    Ok(images)
}

fn variables(value: &Value) -> Result<Vec<TemplateVariable>, EggError> {
    let items: &[Value] = match value {
        Value::Array(items) => items,
        Value::Null => &[],
        Value::Object(map) if map.is_empty() => &[],
        _ => return Err(wrong("variables", "a list")),
    };
    let mut variables = Vec::with_capacity(items.len());
    let mut sort_keys = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = |key: &str| format!("variables[{i}].{key}");
        if !item.is_object() {
            return Err(wrong(format!("variables[{i}]"), "an object"));
        }
        let env = match &item["env_variable"] {
            Value::Null => return Err(EggError::MissingField(field("env_variable"))),
            value => optional_string(value, &field("env_variable"))?,
        };
        let rules = match &item["rules"] {
            // Pelican writes rules as a list; Laravel reads a list and a `|`-joined string alike.
            Value::Array(list) => {
                list.iter().map(|r| optional_string(r, &field("rules"))).collect::<Result<Vec<_>, _>>()?.join("|")
            }
            other => optional_string(other, &field("rules"))?,
        };
        RuleSet::parse(&rules).map_err(|source| EggError::BadRules { variable: env.clone(), source })?;
        variables.push(TemplateVariable {
            name: optional_string(&item["name"], &field("name"))?,
            description: optional_string(&item["description"], &field("description"))?,
            default: optional_string(&item["default_value"], &field("default_value"))?,
            user_viewable: flag(&item["user_viewable"], &field("user_viewable"))?,
            user_editable: flag(&item["user_editable"], &field("user_editable"))?,
            rules,
            env,
        });
        sort_keys.push(item["sort"].as_i64());
    }
    // Pelican orders variables by `sort`; honour it only when every variable has one.
    if sort_keys.iter().all(Option::is_some) {
        let mut keyed: Vec<_> = sort_keys.into_iter().zip(variables).collect();
        keyed.sort_by_key(|(key, _)| *key);
        variables = keyed.into_iter().map(|(_, v)| v).collect();
    }
    Ok(variables)
}

/// A yes/no flag: booleans, 0/1 and their strings. Absent is no, the cautious reading.
fn flag(value: &Value, field: &str) -> Result<bool, EggError> {
    match value {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(*b),
        Value::Number(n) if n.as_u64() == Some(0) => Ok(false),
        Value::Number(n) if n.as_u64() == Some(1) => Ok(true),
        Value::String(s) if matches!(s.as_str(), "0" | "false") => Ok(false),
        Value::String(s) if matches!(s.as_str(), "1" | "true") => Ok(true),
        _ => Err(wrong(field, "true or false")),
    }
}

/// `^C` (and the common typo `^^C`) is SIGINT, `^NAME` that signal, anything else a console line.
fn stop(value: &Value) -> Result<StopAction, EggError> {
    let text = optional_string(value, "config.stop")?;
    if text.is_empty() {
        return Err(EggError::MissingField("config.stop".into()));
    }
    let Some(name) = text.strip_prefix('^') else {
        return Ok(StopAction::Command(text));
    };
    let name = name.strip_prefix('^').unwrap_or(name);
    if name.eq_ignore_ascii_case("C") {
        return Ok(StopAction::Signal(StopSignal::Sigint));
    }
    StopSignal::from_name(name).map(StopAction::Signal).ok_or(EggError::UnknownStopSignal(text))
}

/// `{"done": "text"}` or `{"done": ["a", "b"]}`; Wings reads a `regex:` prefix as a regex.
fn ready_patterns(startup: &Value) -> Result<Vec<ReadyPattern>, EggError> {
    let done = match startup {
        Value::Object(map) => map.get("done").unwrap_or(&Value::Null),
        other => {
            entries(other, "config.startup")?;
            &Value::Null
        }
    };
    let texts = match done {
        Value::String(s) => vec![s.clone()],
        _ => string_list(done, "config.startup.done")?,
    };
    Ok(texts
        .into_iter()
        .map(|text| match text.strip_prefix("regex:") {
            Some(regex) if !regex.is_empty() => ReadyPattern::Regex(regex.to_string()),
            _ => ReadyPattern::Contains(text),
        })
        .collect())
}

/// The install script; an empty one is none.
fn install(installation: &Value) -> Result<Option<InstallScript>, EggError> {
    let script = optional_string(&installation["script"], "scripts.installation.script")?;
    if script.trim().is_empty() {
        return Ok(None);
    }
    let entrypoint = optional_string(&installation["entrypoint"], "scripts.installation.entrypoint")?;
    Ok(Some(InstallScript {
        script,
        image: optional_string(&installation["container"], "scripts.installation.container")?,
        // Pterodactyl's column default.
        entrypoint: if entrypoint.is_empty() { "ash".to_string() } else { entrypoint },
    }))
}

/// `config.files`: path to `{parser, find}`, in order. Wings resolves a leading `/` against the
/// server directory, so it is dropped.
fn config_files(files: &Value) -> Result<Vec<ConfigFile>, EggError> {
    let mut out = Vec::new();
    for (path, file) in entries(files, "config.files")? {
        let field = format!("config.files.{path}");
        let parser_name = optional_string(&file["parser"], &format!("{field}.parser"))?;
        let parser = ConfigParser::from_name(&parser_name)
            .ok_or_else(|| EggError::UnknownParser { file: path.clone(), parser: parser_name.clone() })?;
        let replace = entries(&file["find"], &format!("{field}.find"))?
            .into_iter()
            .map(|(key, value)| ConfigReplacement { key: key.clone(), value: value.clone() })
            .collect();
        out.push(ConfigFile { path: path.trim_start_matches('/').to_string(), parser, replace });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
