//! Just enough URL parsing to find host, port, credentials and database in a
//! `scheme://[user[:password]@]host[:port][/path][?query]` server URL.

/// The parts of a server URL this crate needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServerUrl {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    /// The first path segment, if any (the database for SQL servers, the vhost for AMQP).
    pub path: Option<String>,
}

pub(crate) fn parse(url: &str, default_port: u16) -> Result<ServerUrl, String> {
    let url = url.trim();
    let Some((_scheme, rest)) = url.split_once("://") else {
        return Err("expected scheme://host:port".to_owned());
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(info) => match info.split_once(':') {
            Some((u, p)) => (Some(u.to_owned()), Some(p.to_owned())),
            None => (Some(info.to_owned()), None),
        },
    };
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        // [v6]:port
        let Some((h, after)) = bracketed.split_once(']') else {
            return Err("unterminated [IPv6] host".to_owned());
        };
        let port = match after.strip_prefix(':') {
            Some(p) => parse_port(p)?,
            None if after.is_empty() => default_port,
            None => return Err(format!("unexpected {after:?} after the host")),
        };
        (h.to_owned(), port)
    } else {
        match hostport.rsplit_once(':') {
            // A comma means several hosts (a MongoDB seed list): take the first.
            Some((h, p)) if !h.contains(',') && !p.contains(',') => (h.to_owned(), parse_port(p)?),
            _ => {
                let first = hostport.split(',').next().unwrap_or_default();
                match first.rsplit_once(':') {
                    Some((h, p)) => (h.to_owned(), parse_port(p)?),
                    None => (first.to_owned(), default_port),
                }
            }
        }
    };
    if host.is_empty() {
        return Err("no host".to_owned());
    }
    let path = tail
        .strip_prefix('/')
        .map(|p| p.split(['/', '?', '#']).next().unwrap_or_default())
        .filter(|p| !p.is_empty())
        .map(str::to_owned);
    Ok(ServerUrl {
        host,
        port,
        user,
        password,
        path,
    })
}

fn parse_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("bad port {p:?}")),
        Ok(port) => Ok(port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_url() {
        let u = parse(
            "postgres://bob:s3cr:t@db.example:6543/app?sslmode=disable",
            5432,
        );
        assert_eq!(
            u,
            Ok(ServerUrl {
                host: "db.example".into(),
                port: 6543,
                user: Some("bob".into()),
                password: Some("s3cr:t".into()),
                path: Some("app".into()),
            })
        );
    }

    #[test]
    fn defaults_and_shapes() {
        let u = parse("redis://127.0.0.1", 6379).ok();
        assert_eq!(
            u.map(|u| (u.host, u.port)),
            Some(("127.0.0.1".into(), 6379))
        );
        let u = parse("mqtt://[::1]:1884", 1883).ok();
        assert_eq!(u.map(|u| (u.host, u.port)), Some(("::1".into(), 1884)));
        let u = parse("mongodb://a:1,b:2/?replicaSet=x", 27017).ok();
        assert_eq!(u.map(|u| (u.host, u.port)), Some(("a".into(), 1)));
        let u = parse("amqp://guest:guest@h:5673/%2f", 5672).ok();
        assert_eq!(u.and_then(|u| u.path), Some("%2f".into()));
    }

    #[test]
    fn bad_urls() {
        assert!(parse("localhost:6379", 6379).is_err());
        assert!(parse("redis://:6379", 6379).is_err());
        assert!(parse("redis://h:notaport", 6379).is_err());
        assert!(parse("redis://h:0", 6379).is_err());
        assert!(parse("redis://[::1", 6379).is_err());
    }
}
