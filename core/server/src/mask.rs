//! Masking of passwords in URLs before text reaches stderr or a log.
//!
//! Backend URLs carry credentials (`postgres://user:pass@host/db`), and any
//! error that quotes a configuration value may quote one of them. Everything
//! the binary prints about configuration goes through [`mask_passwords`].

/// What replaces a password.
const MASK: &str = "***";

/// Replace the password of every `scheme://user:password@host` URL found in
/// `text` with `***`. Text without such a URL is returned unchanged.
pub fn mask_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (before, after) = rest.split_at(pos + 3);
        out.push_str(before);
        // The authority ends at the first character that cannot be part of
        // it in a URL, or that ends a quoted URL inside a message.
        let end = after
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '`' | '<' | '>') || c.is_whitespace()
            })
            .unwrap_or(after.len());
        let (authority, tail) = after.split_at(end);
        // The last `@` ends the userinfo: a password may contain a raw `@`
        // even though it should be percent-encoded.
        match authority.rfind('@') {
            Some(at) => {
                let (userinfo, host) = authority.split_at(at);
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..=colon]);
                        out.push_str(MASK);
                    }
                    // A user name alone is not a secret.
                    None => out.push_str(userinfo),
                }
                out.push_str(host);
            }
            None => out.push_str(authority),
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::mask_passwords;

    #[test]
    fn masks_the_password_and_keeps_the_rest() {
        assert_eq!(
            mask_passwords("postgres://user:pass@127.0.0.1:5432/db"),
            "postgres://user:***@127.0.0.1:5432/db"
        );
        assert_eq!(
            mask_passwords("amqp://guest:guest@host:5672/vhost?heartbeat=10"),
            "amqp://guest:***@host:5672/vhost?heartbeat=10"
        );
    }

    #[test]
    fn masks_an_empty_user_and_a_password_with_at_signs() {
        assert_eq!(
            mask_passwords("redis://:s3cret@h:6379"),
            "redis://:***@h:6379"
        );
        assert_eq!(mask_passwords("mysql://u:p@ss@h/db"), "mysql://u:***@h/db");
    }

    #[test]
    fn leaves_urls_without_a_password_alone() {
        for text in [
            "http://127.0.0.1:8080/auth",
            "mqtt://user@broker:1883",
            "memcache://10.0.0.1:11211",
            "no url here: a:b@c",
            "",
        ] {
            assert_eq!(mask_passwords(text), text);
        }
    }

    #[test]
    fn masks_every_url_inside_a_message() {
        let text = r#"found string "mongodb://a:b@h1,h2/db", expected u32; see `redis://x:y@r`"#;
        assert_eq!(
            mask_passwords(text),
            r#"found string "mongodb://a:***@h1,h2/db", expected u32; see `redis://x:***@r`"#
        );
    }

    #[test]
    fn does_not_reach_past_the_end_of_the_authority() {
        // The `@` in the path is not userinfo.
        assert_eq!(
            mask_passwords("http://host/a:b@c and postgres://u:p@h"),
            "http://host/a:b@c and postgres://u:***@h"
        );
    }
}
