//! Validation of every user-supplied value, with errors that name the field.

use std::net::IpAddr;

/// A value that is not acceptable: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ValidationError {
    pub field: String,
    pub problem: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self { field: field.into(), problem: problem.into() }
    }
}

pub type Valid<T = ()> = Result<T, ValidationError>;

fn err<T>(field: &str, problem: impl Into<String>) -> Valid<T> {
    Err(ValidationError::new(field, problem))
}

/// A display name (server, node, role, template, API key): 1..=`max` characters after trimming,
/// no control characters. Unicode is welcome.
pub fn name(field: &str, value: &str, max: usize) -> Valid {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return err(field, "must not be empty");
    }
    if trimmed.len() != value.len() {
        return err(field, "must not start or end with white space");
    }
    if value.chars().count() > max {
        return err(field, format!("must be at most {max} characters"));
    }
    if value.chars().any(char::is_control) {
        return err(field, "must not contain control characters");
    }
    Ok(())
}

/// Free text such as a description: at most `max` characters; newlines and tabs allowed.
pub fn text(field: &str, value: &str, max: usize) -> Valid {
    if value.chars().count() > max {
        return err(field, format!("must be at most {max} characters"));
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r') {
        return err(field, "must not contain control characters");
    }
    Ok(())
}

/// A login name: 3..=32 of `a-z 0-9 . _ -`, starting with a letter or digit.
pub fn username(field: &str, value: &str) -> Valid {
    let len = value.chars().count();
    if !(3..=32).contains(&len) {
        return err(field, "must be 3 to 32 characters");
    }
    if !value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')) {
        return err(field, "may contain only lowercase letters, digits, '.', '_' and '-'");
    }
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return err(field, "must start with a letter or digit");
    }
    Ok(())
}

/// An email address: a pragmatic check (one `@`, a dotted domain, no spaces), at most 254 bytes.
/// Returns the normalized (lowercased) form.
pub fn email(field: &str, value: &str) -> Valid<String> {
    if value.len() > 254 {
        return err(field, "must be at most 254 characters");
    }
    let Some((local, domain)) = value.split_once('@') else {
        return err(field, "must be an email address");
    };
    let bad_char =
        |c: char| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '(' | ')' | ',' | ';' | '"' | '\\');
    if local.is_empty() || local.len() > 64 || local.chars().any(bad_char) || domain.contains('@') {
        return err(field, "must be an email address");
    }
    if hostname(field, domain).is_err() || !domain.contains('.') {
        return err(field, "must be an email address with a valid domain");
    }
    Ok(value.to_ascii_lowercase())
}

/// A DNS name (FQDN) or an IP address, as a node's address.
pub fn hostname(field: &str, value: &str) -> Valid {
    if value.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let v = value.strip_suffix('.').unwrap_or(value);
    if v.is_empty() || v.len() > 253 {
        return err(field, "must be a host name of 1 to 253 characters");
    }
    for label in v.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return err(field, format!("`{label}` is not a valid host name label"));
        }
    }
    Ok(())
}

/// An IP address (v4 or v6).
pub fn ip(field: &str, value: &str) -> Valid<IpAddr> {
    value.parse::<IpAddr>().map_err(|_| ValidationError::new(field, "must be an IP address"))
}

/// A TCP/UDP port a game may use: 1024..=65535 (privileged ports are refused).
pub fn port(field: &str, value: i64) -> Valid<u16> {
    if !(1024..=65535).contains(&value) {
        return err(field, "must be a port between 1024 and 65535");
    }
    Ok(value as u16)
}

/// A port range `start..=end`, at most `max_len` ports.
pub fn port_range(field: &str, start: i64, end: i64, max_len: u32) -> Valid<(u16, u16)> {
    let s = port(field, start)?;
    let e = port(field, end)?;
    if e < s {
        return err(field, "range end must not be below its start");
    }
    if u32::from(e - s) + 1 > max_len {
        return err(field, format!("a range may hold at most {max_len} ports"));
    }
    Ok((s, e))
}

/// An integer within bounds, inclusive.
pub fn int_in(field: &str, value: i64, min: i64, max: i64) -> Valid {
    if value < min || value > max {
        return err(field, format!("must be between {min} and {max}"));
    }
    Ok(())
}

/// A password: 8..=1024 characters. Length is what matters; no composition rules.
pub fn password(field: &str, value: &str) -> Valid {
    let n = value.chars().count();
    if n < 8 {
        return err(field, "must be at least 8 characters");
    }
    if n > 1024 {
        return err(field, "must be at most 1024 characters");
    }
    Ok(())
}

/// An environment variable name as used by templates: `[A-Za-z_][A-Za-z0-9_]*`, at most 64
/// bytes. Names a shell acts on by itself are refused (`BASH_ENV`, `IFS`, ...), so a shell
/// startup cannot be turned into other code by a variable's value; `PATH`, `HOME` and `PWD`
/// belong to the agent.
pub fn env_name(field: &str, value: &str) -> Valid {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return err(field, "must be an environment variable name (A-Z, a-z, 0-9, _; not starting with a digit)");
    }
    const RESERVED: &[&str] = &["PATH", "IFS", "ENV", "BASH_ENV", "SHELLOPTS", "BASHOPTS", "PS4", "HOME", "PWD"];
    if value.starts_with("BASH_FUNC_") || RESERVED.contains(&value) {
        return err(field, format!("`{value}` is reserved: the shell or the agent sets it"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(name("name", "Survival 🌍 #1", 64).is_ok());
        assert!(name("name", "Robert'); DROP TABLE servers;--", 64).is_ok(), "SQL metacharacters are data");
        assert_eq!(name("name", "", 64).unwrap_err().problem, "must not be empty");
        assert_eq!(name("name", " x", 64).unwrap_err().problem, "must not start or end with white space");
        assert_eq!(name("name", "a\u{0}b", 64).unwrap_err().problem, "must not contain control characters");
        assert_eq!(
            name("server.name", &"x".repeat(65), 64).unwrap_err().to_string(),
            "server.name: must be at most 64 characters"
        );
    }

    #[test]
    fn usernames_and_emails() {
        assert!(username("username", "ada.l-9").is_ok());
        assert!(username("username", "Ada").is_err());
        assert!(username("username", "ab").is_err());
        assert!(username("username", "-ab").is_err());
        assert_eq!(email("email", "Ada@Example.org").unwrap(), "ada@example.org");
        for bad in ["ada", "ada@", "@x.org", "a b@x.org", "ada@localhost", "a@b@c.org", "a@-x.org", "a<@x.org"] {
            assert!(email("email", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_and_ports() {
        assert!(hostname("fqdn", "node-1.example.com").is_ok());
        assert!(hostname("fqdn", "10.0.0.1").is_ok());
        assert!(hostname("fqdn", "::1").is_ok());
        assert!(hostname("fqdn", "bad_host.example").is_err());
        assert!(hostname("fqdn", "a..b").is_err());
        assert_eq!(port("port", 25565).unwrap(), 25565);
        assert!(port("port", 80).is_err());
        assert!(port("port", 65536).is_err());
        assert!(port("port", -1).is_err());
        assert_eq!(port_range("ports", 25565, 25570, 1000).unwrap(), (25565, 25570));
        assert!(port_range("ports", 25570, 25565, 1000).is_err());
        assert!(port_range("ports", 2000, 9000, 1000).is_err());
    }

    #[test]
    fn passwords_and_env_names() {
        assert!(password("password", "short").is_err());
        assert!(password("password", "long enough").is_ok());
        assert!(env_name("env", "SERVER_JARFILE").is_ok());
        assert!(env_name("env", "1X").is_err());
        assert!(env_name("env", "lower_ok").is_ok());
        assert!(env_name("env", "LD_LIBRARY_PATH").is_ok());
        assert!(env_name("env", "PATH").is_err());
        assert!(env_name("env", "BASH_ENV").is_err());
        assert!(env_name("env", "a-b").is_err());
        assert!(int_in("memory_mb", 0, 1, 10).is_err());
    }
}
