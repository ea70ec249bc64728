//! Database URLs in messages: the password never appears.

/// `url` without its password (in the authority or as a `password=` parameter).
pub(crate) fn redacted(url: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let base = match base.split_once("://").and_then(|(scheme, rest)| Some((scheme, rest.split_once('@')?))) {
        Some((scheme, (credentials, host))) => match credentials.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => base.to_string(),
        },
        None => base.to_string(),
    };
    let Some(query) = query else { return base };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| if pair.starts_with("password=") { "password=***".to_string() } else { pair.to_string() })
        .collect();
    format!("{base}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn the_password_is_hidden_wherever_it_is() {
        assert_eq!(redacted("postgres://cap:s3cret@db:5432/cap"), "postgres://cap:***@db:5432/cap");
        assert_eq!(redacted("mysql://cap:s3cret@db:3306/cap"), "mysql://cap:***@db:3306/cap");
        assert_eq!(redacted("mongodb://cap:s3cret@db:27017/cap"), "mongodb://cap:***@db:27017/cap");
        assert_eq!(redacted("postgres://cap@db/cap?sslmode=require"), "postgres://cap@db/cap?sslmode=require");
        assert_eq!(redacted("mongodb://db:27017/cap"), "mongodb://db:27017/cap");
        assert_eq!(
            redacted("postgresql://db/cap?user=cap&password=s3cret&sslmode=require"),
            "postgresql://db/cap?user=cap&password=***&sslmode=require"
        );
    }
}
