//! Imports every real egg in `shared/fixtures/eggs`: each one imports, validates, renders its
//! startup from its defaults and round-trips through export, or is a listed refusal with its
//! exact error.

use capcore::template::command::BUILTIN_VARIABLES;
use capcore::template::{StartupCommand, TemplateSpec, egg};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const NOT_AN_EGG: &str = "not an egg: no meta.version";

/// How many files import, by kind of startup command; a change here is a behaviour change.
const IMPORTED_ARGV: usize = 281;
const IMPORTED_SHELL: usize = 104;

/// Files that are refused, with the exact error: game config files that sit beside the eggs, and
/// eggs with a real defect.
const REFUSALS: &[(&str, &str)] = &[
    ("parkervcp/.github/ISSUE_TEMPLATE/egg-request.yml", NOT_AN_EGG),
    ("parkervcp/game_eggs/gta/openmp/config.json", NOT_AN_EGG),
    ("parkervcp/game_eggs/gta/ragemp/conf.json", NOT_AN_EGG),
    ("parkervcp/game_eggs/minecraft/bedrock/PowerNukkitX/nukkit.yml", NOT_AN_EGG),
    ("parkervcp/game_eggs/minecraft/bedrock/gomint/server.yml", NOT_AN_EGG),
    ("parkervcp/game_eggs/minecraft/bedrock/nukkit/nukkit.yml", NOT_AN_EGG),
    ("parkervcp/game_eggs/minecraft/java/nanolimbo/settings.yml", NOT_AN_EGG),
    ("parkervcp/game_eggs/minecraft/proxy/bedrock/waterdog_pe/config.yml", NOT_AN_EGG),
    ("parkervcp/game_eggs/minecraft/proxy/java/waterfall/config.yml", NOT_AN_EGG),
    ("parkervcp/game_eggs/steamcmd_servers/enshrouded/enshrouded_server.json", NOT_AN_EGG),
    ("parkervcp/game_eggs/steamcmd_servers/modiverse/ServerConfiguration.json", NOT_AN_EGG),
    ("parkervcp/game_eggs/steamcmd_servers/neosvr/Config.json", NOT_AN_EGG),
    ("parkervcp/game_eggs/steamcmd_servers/resonite/Config.json", NOT_AN_EGG),
    // `^X` names no signal; Wings would hand Docker an invalid one.
    ("parkervcp/game_eggs/gta/ragemp/egg-rage--m-p.json", "unknown stop signal `^X`"),
    // A typo (`}]` for `}}`) that would reach the game as literal text.
    (
        "parkervcp/game_eggs/steamcmd_servers/battalion_legacy/egg-b-a-t-t-a-l-i-o-n--legacy.json",
        "bad startup command: malformed placeholder at `{{SERVER_NAME}]\" -Queue=`: expected {{NAME}} or {{env.NAME}}",
    ),
    // CLIENT_MODS is computed by the Arma/DayZ image's entrypoint; ADDITIONAL_ARGS is simply missing.
    (
        "parkervcp/game_eggs/steamcmd_servers/arma/arma3/egg-arma3.json",
        "startup uses placeholder `CLIENT_MODS`, which is neither a variable of the egg nor built in",
    ),
    (
        "parkervcp/game_eggs/steamcmd_servers/dayz-experimental/egg-dayz-experimental.json",
        "startup uses placeholder `CLIENT_MODS`, which is neither a variable of the egg nor built in",
    ),
    (
        "parkervcp/game_eggs/steamcmd_servers/rust/rust_staging/egg-rust-staging.json",
        "startup uses placeholder `ADDITIONAL_ARGS`, which is neither a variable of the egg nor built in",
    ),
    (
        "parkervcp/game_eggs/steamcmd_servers/mordhau/egg-mordhau-wine.json",
        "invalid template: variables[11].env: `WINDOWS_INSTALL` is defined twice",
    ),
];

/// Values for the built-ins, as the agent would set them.
fn builtin_value(name: &str) -> &'static str {
    match name {
        "SERVER_MEMORY" => "1024",
        "SERVER_IP" => "0.0.0.0",
        "SERVER_PORT" => "25565",
        other => panic!("no test value for built-in {other}"),
    }
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/eggs")
}

fn egg_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            egg_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "json" || ext == "yaml" || ext == "yml") {
            out.push(path);
        }
    }
}

/// Everything the corpus promises about one imported spec.
fn check_imported(relative: &str, spec: &TemplateSpec) -> Result<&'static str, String> {
    spec.validate().map_err(|e| format!("validate: {e}"))?;
    let mut env = spec.default_environment();
    for name in BUILTIN_VARIABLES {
        env.entry(name.to_string()).or_insert_with(|| builtin_value(name).to_string());
    }
    let command = StartupCommand::parse(&spec.startup).map_err(|e| format!("parse: {e}"))?;
    let rendered = command.render(&env).map_err(|e| format!("render: {e}"))?;
    if rendered.argv.is_empty() || rendered.env != env {
        return Err(format!("render gave {rendered:?}"));
    }
    let exported = serde_json::to_vec(&egg::export(spec)).unwrap();
    let again = egg::import(&exported).map_err(|e| format!("re-import: {e}"))?;
    if again.source_format != "PTDL_v2" {
        return Err(format!("re-import format {}", again.source_format));
    }
    if (TemplateSpec { source_format: spec.source_format.clone(), ..again }) != *spec {
        return Err(format!("{relative}: export does not round-trip"));
    }
    Ok(match command {
        StartupCommand::Argv(_) => "argv",
        StartupCommand::Shell(_) => "shell",
    })
}

#[test]
fn every_egg_imports_or_is_a_listed_refusal() {
    let dir = corpus_dir();
    assert!(dir.is_dir(), "the egg corpus is missing at {}", dir.display());
    let mut files = Vec::new();
    egg_files(&dir, &mut files);
    files.sort();
    assert!(files.len() >= 390, "expected at least 390 egg files, found {}", files.len());

    let mut problems = Vec::new();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut refused = 0;
    for path in &files {
        let relative = path.strip_prefix(&dir).unwrap().to_string_lossy().replace('\\', "/");
        let bytes = std::fs::read(path).unwrap();
        let expected = REFUSALS.iter().find(|(p, _)| *p == relative).map(|(_, e)| *e);
        match (egg::import(&bytes), expected) {
            (Ok(spec), None) => match check_imported(&relative, &spec) {
                Ok(kind) => *counts.entry(kind).or_default() += 1,
                Err(problem) => problems.push(format!("{relative}: {problem}")),
            },
            (Ok(_), Some(error)) => {
                problems.push(format!("{relative}: imported, but listed as refused with `{error}`"))
            }
            (Err(error), None) => problems.push(format!("(\"{relative}\", \"{error}\"),")),
            (Err(error), Some(expected)) if error.to_string() == expected => refused += 1,
            (Err(error), Some(expected)) => {
                problems.push(format!("{relative}: refused with `{error}`, expected `{expected}`"))
            }
        }
    }
    for (listed, _) in REFUSALS {
        if !files.iter().any(|f| f.strip_prefix(&dir).unwrap().to_string_lossy() == *listed) {
            problems.push(format!("{listed}: listed as refused but not in the corpus"));
        }
    }
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
    let argv = counts.get("argv").copied().unwrap_or(0);
    let shell = counts.get("shell").copied().unwrap_or(0);
    assert_eq!((argv, shell, refused), (IMPORTED_ARGV, IMPORTED_SHELL, REFUSALS.len()), "(argv, shell, refused)");
    assert_eq!(argv + shell + refused, files.len());
}
