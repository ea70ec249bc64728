//! Templates (game definitions): the model, variable rules, startup rendering and the egg importer.

pub mod command;
pub mod egg;
pub mod rules;

use crate::ids::TemplateId;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

pub use command::{RenderedCommand, StartupCommand};
pub use rules::{Rule, RuleSet};

/// A game definition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "panel", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub id: TemplateId,
    pub spec: TemplateSpec,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Everything about a template except its identity; what the importer produces and the API edits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "panel", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub author: String,
    /// The startup command with `{{ENV_NAME}}` placeholders. Split into argv by
    /// [`StartupCommand::parse`]; a variable's value is substituted inside one argument and
    /// never re-split or interpreted.
    pub startup: String,
    /// Container images the server may run on (label, image), first is the default.
    #[serde(default)]
    pub images: Vec<TemplateImage>,
    #[serde(default)]
    pub variables: Vec<TemplateVariable>,
    pub stop: StopAction,
    /// Console lines that mean "ready"; any one suffices.
    #[serde(default)]
    pub ready_patterns: Vec<ReadyPattern>,
    #[serde(default)]
    pub install: Option<InstallScript>,
    #[serde(default)]
    pub config_files: Vec<ConfigFile>,
    #[serde(default)]
    pub features: Vec<String>,
    /// Paths users may not touch through the file manager.
    #[serde(default)]
    pub file_denylist: Vec<String>,
    /// Where it came from (`PTDL_v2`, `PLCN_v3`, `cap_v1`).
    #[serde(default)]
    pub source_format: String,
    /// Console commands around a backup of a running server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_hooks: Option<BackupHooks>,
}

/// What a running game is told around a backup, so its files are consistent while they are
/// read (for Minecraft: `save-off` and `save-all` before, `save-on` after).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "panel", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct BackupHooks {
    /// Console commands sent, in order, before the backup starts.
    #[serde(default)]
    pub before: Vec<String>,
    /// A console line (any line containing this text) that says the game is ready to be
    /// backed up, awaited after `before`.
    #[serde(default)]
    pub wait_for: Option<String>,
    /// How long to wait for `wait_for` before backing up anyway (1 to 600 s).
    #[serde(default = "BackupHooks::default_wait_secs")]
    pub wait_secs: u64,
    /// Console commands sent after the backup, whether or not it succeeded.
    #[serde(default)]
    pub after: Vec<String>,
}

impl BackupHooks {
    fn default_wait_secs() -> u64 {
        30
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "panel", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TemplateImage {
    pub label: String,
    pub image: String,
}

/// A user-settable value passed to the game as an environment variable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "panel", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TemplateVariable {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub env: String,
    #[serde(default)]
    pub default: String,
    #[serde(default = "yes")]
    pub user_viewable: bool,
    #[serde(default = "yes")]
    pub user_editable: bool,
    /// The rules in Laravel syntax (`required|string|max:20`), kept verbatim for export.
    #[serde(default)]
    pub rules: String,
}

fn yes() -> bool {
    true
}

impl TemplateVariable {
    /// The parsed rules; a template only stores variables whose rules parse.
    pub fn rule_set(&self) -> Result<RuleSet, rules::RuleError> {
        RuleSet::parse(&self.rules)
    }
}

/// How a server is asked to stop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "panel", derive(schemars::JsonSchema))]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum StopAction {
    /// Send a signal to the process group.
    Signal(StopSignal),
    /// Write this line to the game's stdin.
    Command(String),
}

/// The signals a stop action may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "panel", derive(schemars::JsonSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum StopSignal {
    Sigint,
    Sigterm,
    Sigkill,
    Sighup,
    Sigquit,
    Sigusr1,
    Sigusr2,
}

impl StopSignal {
    pub const ALL: [StopSignal; 7] = [
        StopSignal::Sigint,
        StopSignal::Sigterm,
        StopSignal::Sigkill,
        StopSignal::Sighup,
        StopSignal::Sigquit,
        StopSignal::Sigusr1,
        StopSignal::Sigusr2,
    ];
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Sigint => "SIGINT",
            StopSignal::Sigterm => "SIGTERM",
            StopSignal::Sigkill => "SIGKILL",
            StopSignal::Sighup => "SIGHUP",
            StopSignal::Sigquit => "SIGQUIT",
            StopSignal::Sigusr1 => "SIGUSR1",
            StopSignal::Sigusr2 => "SIGUSR2",
        }
    }
    /// `INT`, `SIGINT` and `sigint` all name SIGINT.
    pub fn from_name(name: &str) -> Option<StopSignal> {
        let upper = name.trim().to_ascii_uppercase();
        let short = upper.strip_prefix("SIG").unwrap_or(&upper);
        Self::ALL.into_iter().find(|s| &s.name()[3..] == short)
    }
}

/// A console line that means the server is ready.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "panel", derive(schemars::JsonSchema))]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum ReadyPattern {
    /// The line contains this text.
    Contains(String),
    /// The line matches this regular expression.
    Regex(String),
}

impl ReadyPattern {
    /// Whether `line` matches. An invalid regex never matches (templates are validated on save).
    pub fn matches(&self, line: &str) -> bool {
        match self {
            ReadyPattern::Contains(s) => line.contains(s.as_str()),
            ReadyPattern::Regex(r) => regex::Regex::new(r).map(|re| re.is_match(line)).unwrap_or(false),
        }
    }
}

/// The install script: run once in the server's directory before first start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "panel", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct InstallScript {
    pub script: String,
    /// Container image for the Docker runtime; ignored by the process runtime.
    #[serde(default)]
    pub image: String,
    /// The interpreter (`bash`, `ash`, `sh`).
    pub entrypoint: String,
}

/// One file the agent rewrites before each start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "panel", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Relative to the server's directory.
    pub path: String,
    pub parser: ConfigParser,
    /// Key (or line prefix for `file`) and replacement, in order. Replacements may hold
    /// placeholders such as `{{server.build.default.port}}` or `{{env.SERVER_PORT}}`.
    pub replace: Vec<ConfigReplacement>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "panel", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ConfigReplacement {
    pub key: String,
    /// A string with placeholders, or (json/yaml) any JSON value.
    pub value: serde_json::Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "panel", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum ConfigParser {
    File,
    Properties,
    Json,
    Ini,
    Yaml,
    Xml,
}

impl ConfigParser {
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "file" => Self::File,
            "properties" => Self::Properties,
            "json" => Self::Json,
            "ini" => Self::Ini,
            "yaml" | "yml" => Self::Yaml,
            "xml" => Self::Xml,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Properties => "properties",
            Self::Json => "json",
            Self::Ini => "ini",
            Self::Yaml => "yaml",
            Self::Xml => "xml",
        }
    }
}

impl TemplateSpec {
    /// Checks the whole spec; the error names the field (`variables[2].rules`).
    pub fn validate(&self) -> crate::validate::Valid {
        use crate::validate::{ValidationError, env_name, name, text};
        name("name", &self.name, 191)?;
        text("description", &self.description, 10_000)?;
        if self.startup.trim().is_empty() {
            return Err(ValidationError::new("startup", "must not be empty"));
        }
        let command =
            StartupCommand::parse(&self.startup).map_err(|e| ValidationError::new("startup", e.to_string()))?;
        for name in command.placeholders() {
            if !command::BUILTIN_VARIABLES.contains(&name.as_str()) && !self.variables.iter().any(|v| v.env == name) {
                return Err(ValidationError::new(
                    "startup",
                    format!("uses `{{{{{name}}}}}`, which is neither a variable nor built in"),
                ));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, v) in self.variables.iter().enumerate() {
            env_name(&format!("variables[{i}].env"), &v.env)?;
            if !seen.insert(v.env.as_str()) {
                return Err(ValidationError::new(
                    format!("variables[{i}].env"),
                    format!("`{}` is defined twice", v.env),
                ));
            }
            v.rule_set().map_err(|e| ValidationError::new(format!("variables[{i}].rules"), e.to_string()))?;
        }
        for (i, p) in self.ready_patterns.iter().enumerate() {
            if let ReadyPattern::Regex(r) = p {
                regex::Regex::new(r)
                    .map_err(|e| ValidationError::new(format!("ready_patterns[{i}]"), e.to_string()))?;
            }
        }
        if let Some(hooks) = &self.backup_hooks {
            for (field, commands) in [("backup_hooks.before", &hooks.before), ("backup_hooks.after", &hooks.after)] {
                if commands.len() > 16 {
                    return Err(ValidationError::new(field, "at most 16 commands"));
                }
                for (i, c) in commands.iter().enumerate() {
                    if c.trim().is_empty()
                        || c.chars().count() > 4096
                        || c.chars().any(|ch| ch.is_control() && ch != '\t')
                    {
                        return Err(ValidationError::new(
                            format!("{field}[{i}]"),
                            "must be one line of 1 to 4096 characters",
                        ));
                    }
                }
            }
            if hooks.wait_for.as_ref().is_some_and(|w| w.trim().is_empty() || w.chars().count() > 1024) {
                return Err(ValidationError::new("backup_hooks.wait_for", "must be 1 to 1024 characters"));
            }
            if !(1..=600).contains(&hooks.wait_secs) {
                return Err(ValidationError::new("backup_hooks.wait_secs", "must be 1 to 600"));
            }
        }
        for (i, f) in self.config_files.iter().enumerate() {
            if f.path.is_empty() || f.path.starts_with('/') || f.path.split('/').any(|c| c == "..") {
                return Err(ValidationError::new(
                    format!("config_files[{i}].path"),
                    "must be a relative path inside the server directory",
                ));
            }
        }
        Ok(())
    }

    /// The values a server starts with: each variable's default.
    pub fn default_environment(&self) -> std::collections::BTreeMap<String, String> {
        self.variables.iter().map(|v| (v.env.clone(), v.default.clone())).collect()
    }

    /// Checks a server's values against each variable's rules; the error names the variable.
    pub fn validate_environment(&self, env: &std::collections::BTreeMap<String, String>) -> crate::validate::Valid {
        use crate::validate::ValidationError;
        for key in env.keys() {
            if !self.variables.iter().any(|v| &v.env == key) {
                return Err(ValidationError::new(format!("environment.{key}"), "is not a variable of this template"));
            }
        }
        for v in &self.variables {
            let field = format!("environment.{}", v.env);
            let rules = v.rule_set().map_err(|e| ValidationError::new(&field, e.to_string()))?;
            rules
                .check(env.get(&v.env).map(String::as_str))
                .map_err(|problem| ValidationError::new(&field, problem))?;
        }
        Ok(())
    }
}
