//! The ignore file of a server's directory (`.capignore`, gitignore-like): what a backup leaves
//! out.
//!
//! One pattern a line; blank lines and lines starting with `#` are skipped. `*` matches within a
//! name, `?` one character, `**` any number of directories. A pattern with a `/` (other than a
//! trailing one) is matched against the whole path from the server's directory (a leading `/`
//! is dropped), one without against every name on the path. A trailing `/` matches directories
//! only; a leading `!` takes an earlier match back. The last matching pattern decides.

use super::RelPath;

/// The name of the ignore file, in the server's directory.
pub const IGNORE_FILE: &str = ".capignore";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IgnoreRules {
    rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    pattern: String,
    anchored: bool,
    dir_only: bool,
    negate: bool,
}

impl IgnoreRules {
    pub fn parse(text: &str) -> Self {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.trim_end();
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let (negate, line) = match line.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, line),
            };
            let (dir_only, line) = match line.strip_suffix('/') {
                Some(rest) => (true, rest),
                None => (false, line),
            };
            let anchored = line.contains('/');
            let pattern = line.trim_start_matches('/').to_string();
            if !pattern.is_empty() {
                rules.push(Rule { pattern, anchored, dir_only, negate });
            }
        }
        Self { rules }
    }

    /// Whether there are no rules (nothing is ever left out).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `path` (a directory when `is_dir`) is left out.
    pub fn ignored(&self, path: &RelPath, is_dir: bool) -> bool {
        let full = path.display();
        let name = path.parts().last().map(String::as_str).unwrap_or_default();
        let mut ignored = false;
        for rule in &self.rules {
            if rule.dir_only && !is_dir {
                continue;
            }
            let matched = if rule.anchored {
                glob(rule.pattern.as_bytes(), full.as_bytes())
            } else {
                glob(rule.pattern.as_bytes(), name.as_bytes())
            };
            if matched {
                ignored = !rule.negate;
            }
        }
        ignored
    }
}

/// Whether `text` matches `pattern`: `*` within a name, `?` one character (not `/`), `**` across
/// names.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern {
        [] => text.is_empty(),
        [b'*', b'*', rest @ ..] => {
            let rest = rest.strip_prefix(b"/").unwrap_or(rest);
            (0..=text.len()).any(|i| (i == 0 || text[i - 1] == b'/') && glob(rest, &text[i..]))
        }
        [b'*', rest @ ..] => {
            (0..=text.len()).take_while(|&i| i == 0 || text[i - 1] != b'/').any(|i| glob(rest, &text[i..]))
        }
        [b'?', rest @ ..] => matches!(text, [c, tail @ ..] if *c != b'/' && glob(rest, tail)),
        [c, rest @ ..] => matches!(text, [t, tail @ ..] if t == c && glob(rest, tail)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> RelPath {
        RelPath::parse("path", p).unwrap()
    }

    #[test]
    fn patterns_match_names_paths_and_directories() {
        let rules =
            IgnoreRules::parse("# comment\n\n*.log\n/cache/\nlogs/**/old-*.gz\n!keep.log\nworld/session.lock\ntmp?\n");
        assert!(rules.ignored(&path("latest.log"), false));
        assert!(rules.ignored(&path("deep/er/latest.log"), false), "a name pattern matches at any depth");
        assert!(!rules.ignored(&path("keep.log"), false), "taken back by `!`");
        assert!(rules.ignored(&path("cache"), true));
        assert!(!rules.ignored(&path("cache"), false), "`cache/` matches directories only");
        assert!(!rules.ignored(&path("sub/cache"), true), "anchored to the top");
        assert!(rules.ignored(&path("logs/old-1.gz"), false), "`**` matches no directory");
        assert!(rules.ignored(&path("logs/a/b/old-2.gz"), false));
        assert!(!rules.ignored(&path("logs/a/new-2.gz"), false));
        assert!(rules.ignored(&path("world/session.lock"), false));
        assert!(!rules.ignored(&path("other/world/session.lock"), false));
        assert!(rules.ignored(&path("tmp1"), false) && !rules.ignored(&path("tmp12"), false));
        assert!(!rules.ignored(&path("server.properties"), false));
    }

    #[test]
    fn stars_do_not_cross_slashes() {
        assert!(glob(b"a/*.txt", b"a/b.txt"));
        assert!(!glob(b"a/*.txt", b"a/b/c.txt"));
        assert!(glob(b"a/**/c.txt", b"a/b/x/c.txt"));
        assert!(!glob(b"?", b"/"));
    }
}
