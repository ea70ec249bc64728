//! Variable rules: the Laravel validation strings eggs carry (`required|string|max:20`), parsed
//! into our own [`Rule`]s and checked without PHP.
//!
//! Semantics follow Laravel as the panel runs it: rule names are case-insensitive and `int`/`bool`
//! alias `integer`/`boolean`; `min`/`max`/`between`/`size`/`gt`/`gte`/`lt`/`lte` compare the number
//! when the set has `numeric` or `integer` and the value is numeric, the length in characters
//! otherwise; a blank value counts as no value for `required` and `nullable`; PHP regexes
//! (`/.../i`) become Rust regexes, with PCRE's ASCII meaning of `\d`, `\w`, `\s` and `\b` kept
//! unless the `u` flag asks for Unicode.
//!
//! Where we knowingly differ from Laravel:
//! - `|` inside a `regex:` or `not_regex:` pattern does not split the string: the pattern runs to
//!   its closing delimiter. Laravel would cut the pattern in two (its docs say to use an array),
//!   which no egg author means, and the importer joins array rules with `|`, so this keeps those
//!   patterns whole.
//! - A blank value that is neither `required` nor `nullable` is checked as the empty string, so
//!   `string` passes and `numeric` fails, where Laravel (seeing null) would fail `string` too.
//! - `gt`/`gte`/`lt`/`lte` with a number compare sizes like `min`/`max`; comparing with another
//!   field is not supported.
//! - `$` matches only at the very end (PCRE also matches before a final newline), which is stricter.

use std::sync::LazyLock;

/// One validation rule.
#[derive(Clone, Debug, PartialEq)]
pub enum Rule {
    Required,
    Nullable,
    Sometimes,
    Present,
    /// Laravel's stop-at-first-failure marker; checking always stops at the first failure.
    Bail,
    String,
    Numeric,
    Integer,
    Boolean,
    Min(f64),
    Max(f64),
    Between(f64, f64),
    Size(f64),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    In(Vec<String>),
    NotIn(Vec<String>),
    /// The Rust regex source, inline flags included.
    Regex(String),
    NotRegex(String),
    Digits(u32),
    DigitsBetween(u32, u32),
    Alpha,
    AlphaDash,
    AlphaNum,
    Url,
    Ip,
    Ipv4,
    Ipv6,
}

/// The rules of one variable, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
}

/// A rule string we cannot turn into rules.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleError {
    #[error("unknown rule `{0}`")]
    UnknownRule(String),
    #[error("rule `{rule}`: {problem}")]
    BadParameter { rule: String, problem: String },
    #[error("rule `{rule}`: the pattern needs delimiters such as /.../")]
    BadRegexDelimiters { rule: String },
    #[error("rule `{rule}`: regex flag `{flag}` is not supported")]
    UnsupportedRegexFlag { rule: String, flag: char },
    #[error("rule `{rule}`: the pattern cannot be compiled by the regex engine")]
    UnsupportedRegex {
        rule: String,
        #[source]
        source: regex::Error,
    },
}

impl RuleSet {
    /// Parses a `|`-separated rule string; the empty string is no rules.
    pub fn parse(rules: &str) -> Result<RuleSet, RuleError> {
        let mut parsed = Vec::new();
        let mut rest = rules;
        while !rest.is_empty() {
            let name_end = rest.find([':', '|']).unwrap_or(rest.len());
            let name = rest[..name_end].trim();
            let normalized: String =
                name.chars().filter(|c| !matches!(c, '_' | '-' | ' ')).flat_map(char::to_lowercase).collect();
            let has_parameter = rest[name_end..].starts_with(':');
            let segment_end = if has_parameter && matches!(normalized.as_str(), "regex" | "notregex") {
                let delimited = split_delimited(&rest[name_end + 1..]);
                name_end + 1 + delimited.ok_or_else(|| RuleError::BadRegexDelimiters { rule: rest.to_string() })?.2
            } else {
                rest.find('|').unwrap_or(rest.len())
            };
            let segment = &rest[..segment_end];
            if !rest[segment_end..].is_empty() && !rest[segment_end..].starts_with('|') {
                return Err(RuleError::BadRegexDelimiters {
                    rule: rest[..rest.find('|').unwrap_or(rest.len())].to_string(),
                });
            }
            rest = rest[segment_end..].strip_prefix('|').unwrap_or("");
            // Laravel skips empty segments, as in `nullable|string|`.
            if !name.is_empty() {
                let parameter = has_parameter.then(|| &segment[name_end + 1..]);
                parsed.push(parse_rule(segment, &normalized, parameter)?);
            }
        }
        Ok(RuleSet { rules: parsed })
    }

    fn has(&self, rule: &Rule) -> bool {
        self.rules.contains(rule)
    }

    /// Checks a value (`None` when absent); the error is a problem text such as
    /// `must be at most 20 characters`.
    pub fn check(&self, value: Option<&str>) -> Result<(), String> {
        if value.is_none() && self.has(&Rule::Sometimes) {
            return Ok(());
        }
        let blank = value.is_none_or(|v| v.trim().is_empty());
        if blank && self.has(&Rule::Required) {
            return Err("is required".into());
        }
        if value.is_none() && self.has(&Rule::Present) {
            return Err("must be present".into());
        }
        let Some(value) = value else { return Ok(()) };
        if blank && self.has(&Rule::Nullable) {
            return Ok(());
        }
        let numeric_context = (self.has(&Rule::Numeric) || self.has(&Rule::Integer)) && is_numeric(value);
        let (size, unit) = if numeric_context {
            (php_trim(value).parse::<f64>().unwrap_or(f64::NAN), "")
        } else {
            (value.chars().count() as f64, " characters")
        };
        for rule in &self.rules {
            check_rule(rule, value, size, unit)?;
        }
        Ok(())
    }
}

fn check_rule(rule: &Rule, value: &str, size: f64, unit: &str) -> Result<(), String> {
    let fail = |problem: String| Err(problem);
    match rule {
        Rule::Required | Rule::Nullable | Rule::Sometimes | Rule::Present | Rule::Bail | Rule::String => Ok(()),
        Rule::Numeric if !is_numeric(value) => fail("must be a number".into()),
        Rule::Integer if !is_integer(value) => fail("must be an integer".into()),
        Rule::Boolean if !matches!(value, "true" | "false" | "1" | "0") => fail("must be true, false, 1 or 0".into()),
        Rule::Min(n) if size < *n => fail(format!("must be at least {n}{unit}")),
        Rule::Max(n) if size > *n => fail(format!("must be at most {n}{unit}")),
        Rule::Between(a, b) if size < *a || size > *b => fail(format!("must be between {a} and {b}{unit}")),
        Rule::Size(n) if size != *n => fail(format!("must be exactly {n}{unit}")),
        Rule::Gt(n) if size <= *n => fail(format!("must be more than {n}{unit}")),
        Rule::Gte(n) if size < *n => fail(format!("must be at least {n}{unit}")),
        Rule::Lt(n) if size >= *n => fail(format!("must be less than {n}{unit}")),
        Rule::Lte(n) if size > *n => fail(format!("must be at most {n}{unit}")),
        Rule::In(list) if !list.iter().any(|x| x == value) => fail(format!("must be one of: {}", list.join(", "))),
        Rule::NotIn(list) if list.iter().any(|x| x == value) => {
            fail(format!("must not be one of: {}", list.join(", ")))
        }
        // A source that does not compile cannot come from `parse`; it fails closed.
        Rule::Regex(source) if !regex::Regex::new(source).is_ok_and(|re| re.is_match(value)) => {
            fail(format!("must match the pattern `{source}`"))
        }
        Rule::NotRegex(source) if regex::Regex::new(source).ok().is_none_or(|re| re.is_match(value)) => {
            fail(format!("must not match the pattern `{source}`"))
        }
        Rule::Digits(n) if !is_digits(value) || value.len() != *n as usize => fail(format!("must be {n} digits")),
        Rule::DigitsBetween(a, b) if !is_digits(value) || value.len() < *a as usize || value.len() > *b as usize => {
            fail(format!("must be between {a} and {b} digits"))
        }
        Rule::Alpha if !ALPHA.is_match(value) => fail("may contain only letters".into()),
        Rule::AlphaDash if !ALPHA_DASH.is_match(value) => {
            fail("may contain only letters, digits, dashes and underscores".into())
        }
        Rule::AlphaNum if !ALPHA_NUM.is_match(value) => fail("may contain only letters and digits".into()),
        Rule::Url if !URL.is_match(value) => fail("must be a url".into()),
        Rule::Ip if value.parse::<std::net::IpAddr>().is_err() => fail("must be an ip address".into()),
        Rule::Ipv4 if value.parse::<std::net::Ipv4Addr>().is_err() => fail("must be an ipv4 address".into()),
        Rule::Ipv6 if value.parse::<std::net::Ipv6Addr>().is_err() => fail("must be an ipv6 address".into()),
        _ => Ok(()),
    }
}

// Laravel's own patterns for these rules (`\pL\pM` letters and marks, `\pN` digits).
static ALPHA: LazyLock<regex::Regex> = LazyLock::new(|| regex::Regex::new(r"\A[\pL\pM]+\z").unwrap());
static ALPHA_DASH: LazyLock<regex::Regex> = LazyLock::new(|| regex::Regex::new(r"\A[\pL\pM\pN_-]+\z").unwrap());
static ALPHA_NUM: LazyLock<regex::Regex> = LazyLock::new(|| regex::Regex::new(r"\A[\pL\pM\pN]+\z").unwrap());
/// A pragmatic URL shape: scheme, host (name, IPv4 or `[IPv6]`), optional port, no white space.
static URL: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(
        r"\A[A-Za-z][A-Za-z0-9+.-]*://([^\s/?#@]+@)?([\pL\pN-]+(\.[\pL\pN-]+)*\.?|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?([/?#]\S*)?\z",
    )
    .unwrap()
});

/// The white space PHP's numeric checks ignore around a number.
fn php_trim(value: &str) -> &str {
    value.trim_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c'])
}

/// PHP's `is_numeric`: optional surrounding white space, sign, decimal digits with an optional
/// fraction, optional exponent. No hex, no `inf`/`nan`.
fn is_numeric(value: &str) -> bool {
    let s = php_trim(value);
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(at) => (&s[..at], Some(&s[at + 1..])),
        None => (s, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = digits(whole) && digits(fraction) && !(whole.is_empty() && fraction.is_empty());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

/// PHP's `FILTER_VALIDATE_INT`: optional sign, no leading zeros, fits in 64 bits.
fn is_integer(value: &str) -> bool {
    let s = php_trim(value);
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let canonical =
        unsigned == "0" || (unsigned.starts_with(|c: char| ('1'..='9').contains(&c)) && is_digits(unsigned));
    canonical && s.parse::<i64>().is_ok()
}

fn is_digits(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit())
}

fn parse_rule(segment: &str, name: &str, parameter: Option<&str>) -> Result<Rule, RuleError> {
    let bad = |problem: &str| RuleError::BadParameter { rule: segment.to_string(), problem: problem.to_string() };
    let list = || parameter.map(csv).unwrap_or_default();
    let numbers = |n: usize| -> Result<Vec<f64>, RuleError> {
        let values = list();
        if values.len() != n || parameter.is_none() {
            return Err(bad(if n == 1 { "expects one number" } else { "expects two numbers" }));
        }
        let numbers: Vec<f64> = values.iter().filter(|v| is_numeric(v)).filter_map(|v| v.trim().parse().ok()).collect();
        if numbers.len() != n {
            return Err(bad("expects a number (comparing with another field is not supported)"));
        }
        Ok(numbers)
    };
    let counts = |n: usize| -> Result<Vec<u32>, RuleError> {
        let values = list();
        let counts: Vec<u32> = values.iter().filter_map(|v| v.trim().parse().ok()).collect();
        if parameter.is_none() || values.len() != n || counts.len() != n {
            return Err(bad(if n == 1 { "expects one whole number" } else { "expects two whole numbers" }));
        }
        Ok(counts)
    };
    // Rules that take no parameter ignore one, as Laravel does (the `nullable:string` typo).
    Ok(match name {
        "required" => Rule::Required,
        "nullable" => Rule::Nullable,
        "sometimes" => Rule::Sometimes,
        "present" => Rule::Present,
        "bail" => Rule::Bail,
        "string" => Rule::String,
        "numeric" => Rule::Numeric,
        "integer" | "int" => Rule::Integer,
        "boolean" | "bool" => Rule::Boolean,
        "alpha" => Rule::Alpha,
        "alphadash" => Rule::AlphaDash,
        "alphanum" => Rule::AlphaNum,
        "url" => Rule::Url,
        "ip" => Rule::Ip,
        "ipv4" => Rule::Ipv4,
        "ipv6" => Rule::Ipv6,
        "min" => Rule::Min(numbers(1)?[0]),
        "max" => Rule::Max(numbers(1)?[0]),
        "size" => Rule::Size(numbers(1)?[0]),
        "gt" => Rule::Gt(numbers(1)?[0]),
        "gte" => Rule::Gte(numbers(1)?[0]),
        "lt" => Rule::Lt(numbers(1)?[0]),
        "lte" => Rule::Lte(numbers(1)?[0]),
        "between" => {
            let n = numbers(2)?;
            Rule::Between(n[0], n[1])
        }
        "digits" => Rule::Digits(counts(1)?[0]),
        "digitsbetween" => {
            let n = counts(2)?;
            Rule::DigitsBetween(n[0], n[1])
        }
        "in" | "notin" => {
            if parameter.is_none() {
                return Err(bad("expects a list of values"));
            }
            if name == "in" { Rule::In(list()) } else { Rule::NotIn(list()) }
        }
        "regex" | "notregex" => {
            let pattern = parameter.ok_or_else(|| RuleError::BadRegexDelimiters { rule: segment.to_string() })?;
            let source = php_to_rust_regex(segment, pattern)?;
            if name == "regex" { Rule::Regex(source) } else { Rule::NotRegex(source) }
        }
        _ => return Err(RuleError::UnknownRule(segment.split(':').next().unwrap_or(segment).trim().to_string())),
    })
}

/// PHP's `str_getcsv` as Laravel uses it for parameters: commas separate, double quotes group.
fn csv(parameter: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = parameter.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            _ => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

/// A PHP-delimited pattern (`/a|b/i`) at the start of `text`, found the way PHP's `preg_*` finds
/// it: the body, the flags, and how many bytes the whole took. `None` without a closing delimiter.
fn split_delimited(text: &str) -> Option<(&str, &str, usize)> {
    let lead = text.len() - text.trim_start().len();
    let open = text[lead..].chars().next()?;
    if open.is_alphanumeric() || open == '\\' {
        return None;
    }
    let close = match open {
        '(' => ')',
        '[' => ']',
        '{' => '}',
        '<' => '>',
        other => other,
    };
    let body_start = lead + open.len_utf8();
    let mut depth = 1;
    let mut chars = text[body_start..].char_indices();
    while let Some((at, c)) = chars.next() {
        if c == '\\' {
            chars.next();
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                let body_end = body_start + at;
                let flags_start = body_end + c.len_utf8();
                let flags_len =
                    text[flags_start..].find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(text.len() - flags_start);
                let flags = &text[flags_start..flags_start + flags_len];
                let end = flags_start + flags_len;
                let end = end + (text[end..].len() - text[end..].trim_start_matches([' ', '\t', '\r', '\n']).len());
                return Some((&text[body_start..body_end], flags, end));
            }
        } else if c == open && open != close {
            depth += 1;
        }
    }
    None
}

/// Turns `/pattern/flags` into a Rust regex source and checks that it compiles.
fn php_to_rust_regex(rule: &str, delimited: &str) -> Result<String, RuleError> {
    let bad_delimiters = || RuleError::BadRegexDelimiters { rule: rule.to_string() };
    let (body, flags, len) = split_delimited(delimited).ok_or_else(bad_delimiters)?;
    if len != delimited.len() {
        return Err(bad_delimiters());
    }
    let mut inline = String::new();
    let (mut unicode, mut anchored) = (false, false);
    for flag in flags.chars() {
        match flag {
            'i' | 'm' | 's' | 'x' | 'U' => inline.push(flag),
            'u' => unicode = true,
            'A' => anchored = true,
            // `D` (dollar at the very end) is already Rust's meaning; `S` only asks PCRE to study.
            'D' | 'S' => {}
            other => return Err(RuleError::UnsupportedRegexFlag { rule: rule.to_string(), flag: other }),
        }
    }
    let body = if unicode { body.to_string() } else { ascii_classes(body) };
    let mut source = String::new();
    if !inline.is_empty() {
        source.push_str(&format!("(?{inline})"));
    }
    if anchored {
        source.push_str(&format!(r"\A(?:{body})"));
    } else {
        source.push_str(&body);
    }
    regex::Regex::new(&source).map_err(|source| RuleError::UnsupportedRegex { rule: rule.to_string(), source })?;
    Ok(source)
}

/// Gives `\d \w \s \b` (and negations) PCRE's ASCII meaning; Rust's would be Unicode.
fn ascii_classes(body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 16);
    let mut in_class = false;
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(next) = chars.next() else {
                    out.push('\\');
                    break;
                };
                let posix = match next {
                    'd' => Some(":digit:"),
                    'D' => Some(":^digit:"),
                    'w' => Some(":word:"),
                    'W' => Some(":^word:"),
                    's' => Some(":space:"),
                    'S' => Some(":^space:"),
                    _ => None,
                };
                match (posix, next) {
                    (Some(class), _) if in_class => out.push_str(&format!("[{class}]")),
                    (Some(class), _) => out.push_str(&format!("[[{class}]]")),
                    (None, 'b' | 'B') if !in_class => out.push_str(&format!(r"(?-u:\{next})")),
                    _ => {
                        out.push('\\');
                        out.push(next);
                    }
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                // A `]` right after `[` or `[^` is a literal in both dialects.
                if chars.peek() == Some(&'^') {
                    out.push(chars.next().unwrap());
                }
                if chars.peek() == Some(&']') {
                    chars.next();
                    out.push_str(r"\]");
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
