//! Tests for rule parsing (every rule the fixture eggs use) and Laravel-like checking.

use super::*;

fn set(rules: &str) -> RuleSet {
    RuleSet::parse(rules).unwrap_or_else(|e| panic!("{rules:?}: {e}"))
}

fn check(rules: &str, value: &str) -> Result<(), String> {
    set(rules).check(Some(value))
}

#[test]
fn parses_the_rules_eggs_use() {
    assert_eq!(set("").rules, []);
    assert_eq!(set("required|string|max:20").rules, [Rule::Required, Rule::String, Rule::Max(20.0)]);
    assert_eq!(set("nullable|numeric|").rules, [Rule::Nullable, Rule::Numeric], "empty segments are skipped");
    assert_eq!(set("required|int|between:0,60").rules, [Rule::Required, Rule::Integer, Rule::Between(0.0, 60.0)]);
    assert_eq!(
        set("Required|BOOL|Alpha_Dash|alpha-num").rules,
        [Rule::Required, Rule::Boolean, Rule::AlphaDash, Rule::AlphaNum]
    );
    assert_eq!(
        set("required|string|in:gta:iii,gta:vc").rules,
        [Rule::Required, Rule::String, Rule::In(vec!["gta:iii".into(), "gta:vc".into()])]
    );
    assert_eq!(set("nullable:string").rules, [Rule::Nullable], "Laravel ignores the parameter");
    assert_eq!(set(r#"in:"a,b",c"#).rules, [Rule::In(vec!["a,b".into(), "c".into()])]);
    assert_eq!(
        set("nullable|integer|gt:0|gte:1|lt:9|lte:8|size:32|min:1.5|digits:4|digits_between:1,6").rules,
        [
            Rule::Nullable,
            Rule::Integer,
            Rule::Gt(0.0),
            Rule::Gte(1.0),
            Rule::Lt(9.0),
            Rule::Lte(8.0),
            Rule::Size(32.0),
            Rule::Min(1.5),
            Rule::Digits(4),
            Rule::DigitsBetween(1, 6)
        ]
    );
    assert_eq!(
        set("present|sometimes|bail|url|ip|ipv4|ipv6|alpha|not_in:x").rules,
        [
            Rule::Present,
            Rule::Sometimes,
            Rule::Bail,
            Rule::Url,
            Rule::Ip,
            Rule::Ipv4,
            Rule::Ipv6,
            Rule::Alpha,
            Rule::NotIn(vec!["x".into()])
        ]
    );
}

#[test]
fn php_regexes_become_rust_regexes() {
    assert_eq!(
        set(r"required|regex:/^([\w\d._-]+)(\.jar)$/|max:80").rules,
        [Rule::Required, Rule::Regex(r"^([[:word:][:digit:]._-]+)(\.jar)$".into()), Rule::Max(80.0)]
    );
    // Bracket delimiters, as in `regex:([a-z-0-9]+$)`.
    assert_eq!(set("nullable|regex:([a-z-0-9]+$)").rules, [Rule::Nullable, Rule::Regex("[a-z-0-9]+$".into())]);
    assert_eq!(set("regex:#^a(b)c$#i").rules, [Rule::Regex("(?i)^a(b)c$".into())]);
    assert_eq!(set(r"regex:/^\w+$/u").rules, [Rule::Regex(r"^\w+$".into())], "u keeps Unicode classes");
    assert_eq!(set(r"not_regex:/\s/").rules, [Rule::NotRegex("[[:space:]]".into())]);
    assert_eq!(set(r"regex:/^(?:true)?(?:false)?\b/").rules, [Rule::Regex(r"^(?:true)?(?:false)?(?-u:\b)".into())]);
    assert_eq!(set(r"regex:/[^\D]/").rules, [Rule::Regex(r"[^[:^digit:]]".into())]);
    assert_eq!(set(r"regex:/x/A").rules, [Rule::Regex(r"\A(?:x)".into())]);
}

#[test]
fn a_bar_inside_a_regex_does_not_split_the_rules() {
    assert_eq!(
        set("required|regex:/^(a|b)$/|max:3").rules,
        [Rule::Required, Rule::Regex("^(a|b)$".into()), Rule::Max(3.0)]
    );
    assert_eq!(set("regex:/^(a|b)$/").rules, [Rule::Regex("^(a|b)$".into())]);
}

#[test]
fn parse_errors_name_the_rule() {
    assert_eq!(RuleSet::parse("required|strnig"), Err(RuleError::UnknownRule("strnig".into())));
    assert_eq!(RuleSet::parse("exists:users,id"), Err(RuleError::UnknownRule("exists".into())));
    assert!(matches!(RuleSet::parse("max:abc"), Err(RuleError::BadParameter { rule, .. }) if rule == "max:abc"));
    assert!(matches!(RuleSet::parse("max"), Err(RuleError::BadParameter { .. })));
    assert!(matches!(RuleSet::parse("between:1"), Err(RuleError::BadParameter { .. })));
    assert!(matches!(RuleSet::parse("gt:other_field"), Err(RuleError::BadParameter { .. })));
    assert!(matches!(RuleSet::parse("digits:-1"), Err(RuleError::BadParameter { .. })));
    assert_eq!(RuleSet::parse("regex:abc"), Err(RuleError::BadRegexDelimiters { rule: "regex:abc".into() }));
    assert_eq!(RuleSet::parse("regex:/abc"), Err(RuleError::BadRegexDelimiters { rule: "regex:/abc".into() }));
    assert_eq!(RuleSet::parse("regex:/a/x/"), Err(RuleError::BadRegexDelimiters { rule: "regex:/a/x/".into() }));
    assert_eq!(
        RuleSet::parse("regex:/a/e"),
        Err(RuleError::UnsupportedRegexFlag { rule: "regex:/a/e".into(), flag: 'e' })
    );
    let lookahead = RuleSet::parse("required|regex:/^(?=a)/").unwrap_err();
    assert!(matches!(&lookahead, RuleError::UnsupportedRegex { rule, .. } if rule == "regex:/^(?=a)/"));
    assert_eq!(lookahead.to_string(), "rule `regex:/^(?=a)/`: the pattern cannot be compiled by the regex engine");
}

#[test]
fn required_nullable_present_and_sometimes_follow_laravel() {
    let required = set("required|string|max:5");
    assert_eq!(required.check(None), Err("is required".into()));
    assert_eq!(required.check(Some("")), Err("is required".into()));
    assert_eq!(required.check(Some("  ")), Err("is required".into()));
    assert_eq!(required.check(Some("abc")), Ok(()));
    let nullable = set("nullable|numeric|max:5");
    assert_eq!(nullable.check(Some("")), Ok(()));
    assert_eq!(nullable.check(None), Ok(()));
    assert_eq!(nullable.check(Some("9")), Err("must be at most 5".into()));
    // Neither required nor nullable: absent passes, a blank value is checked as it is.
    assert_eq!(set("numeric").check(None), Ok(()));
    assert_eq!(set("numeric").check(Some("")), Err("must be a number".into()));
    assert_eq!(set("string|max:5").check(Some("")), Ok(()));
    assert_eq!(set("present").check(None), Err("must be present".into()));
    assert_eq!(set("present").check(Some("")), Ok(()));
    assert_eq!(set("sometimes|required").check(None), Ok(()));
    assert_eq!(set("sometimes|required").check(Some("")), Err("is required".into()));
}

#[test]
fn sizes_are_numbers_with_numeric_rules_and_lengths_otherwise() {
    assert_eq!(check("string|max:20", &"x".repeat(21)), Err("must be at most 20 characters".into()));
    assert_eq!(check("string|max:3", "äöü"), Ok(()), "characters, not bytes");
    assert_eq!(check("max:3", "1000"), Err("must be at most 3 characters".into()));
    assert_eq!(check("numeric|max:3", "1000"), Err("must be at most 3".into()));
    assert_eq!(check("integer|between:1,100", "100"), Ok(()));
    assert_eq!(check("integer|between:1,100", "101"), Err("must be between 1 and 100".into()));
    assert_eq!(check("string|between:3,15", "ab"), Err("must be between 3 and 15 characters".into()));
    assert_eq!(check("min:1.5|numeric", "1.4"), Err("must be at least 1.5".into()));
    assert_eq!(check("alpha_num|size:32", &"a".repeat(31)), Err("must be exactly 32 characters".into()));
    assert_eq!(check("integer|gt:0", "0"), Err("must be more than 0".into()));
    assert_eq!(check("integer|gt:0", "1"), Ok(()));
    assert_eq!(check("integer|gte:1", "0"), Err("must be at least 1".into()));
    assert_eq!(check("integer|lt:5", "5"), Err("must be less than 5".into()));
    assert_eq!(check("integer|lte:5", "6"), Err("must be at most 5".into()));
    // A non-numeric value fails `numeric` first and its size is its length.
    assert_eq!(check("numeric|max:3", "abcd"), Err("must be a number".into()));
}

#[test]
fn type_rules() {
    for ok in ["1", "-1", "+1.5", " 2 ", ".5", "5.", "1e3", "-1.5E-3"] {
        assert_eq!(check("numeric", ok), Ok(()), "{ok}");
    }
    for bad in ["abc", "1a", "0x1A", "inf", "NaN", ".", "1e", "--1", "1 2"] {
        assert_eq!(check("numeric", bad), Err("must be a number".into()), "{bad}");
    }
    for ok in ["0", "-0", "+7", "25565", "9223372036854775807"] {
        assert_eq!(check("integer", ok), Ok(()), "{ok}");
    }
    for bad in ["1.0", "007", "1e3", "9223372036854775808", "x"] {
        assert_eq!(check("integer", bad), Err("must be an integer".into()), "{bad}");
    }
    for ok in ["true", "false", "1", "0"] {
        assert_eq!(check("boolean", ok), Ok(()), "{ok}");
    }
    for bad in ["yes", "TRUE", "2", "on"] {
        assert_eq!(check("boolean", bad), Err("must be true, false, 1 or 0".into()), "{bad}");
    }
}

#[test]
fn lists_patterns_and_character_classes() {
    assert_eq!(check("in:true,false", "true"), Ok(()));
    assert_eq!(check("in:true,false", "yes"), Err("must be one of: true, false".into()));
    assert_eq!(check("not_in:root,admin", "admin"), Err("must not be one of: root, admin".into()));
    let jar = r"required|regex:/^([\w\d._-]+)(\.jar)$/";
    assert_eq!(check(jar, "server.jar"), Ok(()));
    assert!(check(jar, "../x.jar; rm").is_err());
    assert!(check(jar, "é.jar").is_err(), "PCRE without /u treats \\w as ASCII");
    assert_eq!(check(r"regex:/^\w+$/u", "é"), Ok(()));
    assert_eq!(check("regex:/^abc$/i", "ABC"), Ok(()));
    assert!(check("regex:/^abc$/", "abc\n").is_err(), "stricter than PCRE's $");
    assert_eq!(check(r"not_regex:/\s/", "a b"), Err(r"must not match the pattern `[[:space:]]`".into()));
    assert_eq!(check("digits:4", "1234"), Ok(()));
    assert_eq!(check("digits:4", "12a4"), Err("must be 4 digits".into()));
    assert_eq!(check("digits_between:1,3", "1234"), Err("must be between 1 and 3 digits".into()));
    assert_eq!(check("alpha", "Ünïcode"), Ok(()));
    assert_eq!(check("alpha", "a1"), Err("may contain only letters".into()));
    assert_eq!(check("alpha_dash", "a-b_c9"), Ok(()));
    assert_eq!(check("alpha_dash", "a b"), Err("may contain only letters, digits, dashes and underscores".into()));
    assert_eq!(check("alpha_num", "abc123"), Ok(()));
    assert_eq!(check("alpha_num", "abc-1"), Err("may contain only letters and digits".into()));
}

#[test]
fn urls_and_ips() {
    for ok in [
        "https://example.com",
        "http://1.2.3.4:8080/x?y=z#f",
        "ftp://user:pw@host/file",
        "http://[::1]/",
        "https://bücher.de",
    ] {
        assert_eq!(check("url", ok), Ok(()), "{ok}");
    }
    for bad in ["example.com", "http://", "http://exa mple.com", "javascript:alert(1)", "https://a.com/ x"] {
        assert_eq!(check("url", bad), Err("must be a url".into()), "{bad}");
    }
    assert_eq!(check("ip", "::1"), Ok(()));
    assert_eq!(check("ipv4", "10.0.0.1"), Ok(()));
    assert_eq!(check("ipv4", "::1"), Err("must be an ipv4 address".into()));
    assert_eq!(check("ipv6", "10.0.0.1"), Err("must be an ipv6 address".into()));
    assert_eq!(check("ip", "999.1.1.1"), Err("must be an ip address".into()));
}
