//! The paths a file manager request names: `/`-separated, relative to the server's directory,
//! turned into normal components before anything touches the disk.

use capcore::{Error, Result};

/// The longest path a request may name, in bytes (Linux's `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;
/// The longest name of one component, in bytes (Linux's `NAME_MAX`).
pub const MAX_NAME_BYTES: usize = 255;

/// A path inside a server's directory: normal components only. A leading `/` means the
/// server's directory, `.` and empty components are dropped and `..` takes one back, never
/// above the server's directory. Nothing here follows a link: whether a component is a
/// directory is left to the kernel, which refuses symbolic links (see `super::ServerFiles`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelPath {
    parts: Vec<String>,
}

impl RelPath {
    /// Parses `raw` from the request field `field`, which the error names.
    pub fn parse(field: &str, raw: &str) -> Result<Self> {
        if raw.len() > MAX_PATH_BYTES {
            return Err(Error::invalid(field, format!("longer than {MAX_PATH_BYTES} bytes")));
        }
        if raw.contains('\0') {
            return Err(Error::invalid(field, "contains a NUL byte"));
        }
        let mut parts: Vec<String> = Vec::new();
        for part in raw.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(Error::forbidden(format!("`{raw}` leads outside the server's directory")));
                    }
                }
                name if name.len() > MAX_NAME_BYTES => {
                    return Err(Error::invalid(field, format!("a name is longer than {MAX_NAME_BYTES} bytes")));
                }
                name => parts.push(name.to_string()),
            }
        }
        Ok(Self { parts })
    }

    /// The server's directory itself.
    pub fn root() -> Self {
        Self { parts: Vec::new() }
    }

    pub fn is_root(&self) -> bool {
        self.parts.is_empty()
    }

    /// The path as the file manager shows it: components joined by `/`, no leading `/`.
    pub fn display(&self) -> String {
        self.parts.join("/")
    }

    /// The directory holding the last component, and that component; `None` for the root.
    pub fn split_last(&self) -> Option<(RelPath, &str)> {
        let (last, parent) = self.parts.split_last()?;
        Some((RelPath { parts: parent.to_vec() }, last.as_str()))
    }

    /// This path with `name` appended (a single component, as read from a directory).
    pub fn join(&self, name: &str) -> RelPath {
        let mut parts = self.parts.clone();
        parts.push(name.to_string());
        RelPath { parts }
    }

    /// Whether `self` is `other` or lies inside it.
    pub fn starts_with(&self, other: &RelPath) -> bool {
        self.parts.starts_with(&other.parts)
    }

    pub(crate) fn parts(&self) -> &[String] {
        &self.parts
    }
}

/// Refuses a name for something the file manager is asked to create: control characters
/// (newlines, escapes) make names that break listings and logs; an existing file with such a
/// name can still be read, renamed or deleted.
pub fn check_new_name(field: &str, name: &str) -> Result<()> {
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(field, "a new name may not contain control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &str) -> String {
        RelPath::parse("path", raw).unwrap().display()
    }

    #[test]
    fn slashes_dots_and_dot_dots_become_normal_components() {
        assert_eq!(parsed("/"), "");
        assert_eq!(parsed(""), "");
        assert_eq!(parsed("/world//region/./r.0.0.mca"), "world/region/r.0.0.mca");
        assert_eq!(parsed("a/b/../c"), "a/c");
        assert_eq!(parsed("a/.."), "");
        assert_eq!(parsed("name with spaces/ünïcode ✓"), "name with spaces/ünïcode ✓");
    }

    #[test]
    fn leaving_the_directory_is_forbidden() {
        for raw in ["..", "/..", "../etc/passwd", "a/../../b", "/a/b/../../../x"] {
            let err = RelPath::parse("path", raw).unwrap_err();
            assert!(matches!(err, Error::Forbidden { .. }), "{raw}: {err:?}");
            assert!(err.to_string().contains("outside the server's directory"), "{raw}: {err}");
        }
    }

    #[test]
    fn nul_bytes_and_oversized_paths_are_invalid() {
        let err = RelPath::parse("path", "a\0b").unwrap_err();
        assert!(err.to_string().contains("NUL"), "{err}");
        let long_name = "x".repeat(MAX_NAME_BYTES + 1);
        assert!(RelPath::parse("path", &long_name).unwrap_err().to_string().contains("255"));
        let long_path = "a/".repeat(MAX_PATH_BYTES);
        assert!(RelPath::parse("path", &long_path).unwrap_err().to_string().contains("4096"));
    }

    #[test]
    fn split_last_and_join_are_inverse() {
        let path = RelPath::parse("path", "a/b/c").unwrap();
        let (parent, name) = path.split_last().unwrap();
        assert_eq!((parent.display().as_str(), name), ("a/b", "c"));
        assert_eq!(parent.join(name), path);
        assert!(RelPath::root().split_last().is_none());
        assert!(path.starts_with(&parent) && !parent.starts_with(&path));
    }

    #[test]
    fn new_names_refuse_control_characters() {
        assert!(check_new_name("name", "ok name ✓").is_ok());
        assert!(check_new_name("name", "bad\nname").is_err());
        assert!(check_new_name("name", "bad\u{1b}[31m").is_err());
    }
}
