//! PROXY protocol v1 (text) and v2 (binary) headers, as HAProxy, AWS NLB,
//! nginx and Envoy send them in front of a connection.
//!
//! The header is read without consuming a byte past it: the socket is
//! peeked, and only bytes known to belong to the header are read.
//! Everything after it (a TLS ClientHello, an HTTP upgrade, MQTT) stays in
//! the socket for the next stage, so no stage needs a replay buffer and the
//! plain TCP stream stays a plain `TcpStream`.

use std::net::SocketAddr;

use ppp::v2::{self, Command};
use ppp::{PartialResult, v1};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::error::{Stage, TransportError};
use crate::meta::{ProxyInfo, ProxyTls};

/// Longest header accepted. v1 is at most 107 bytes; v2 allows 64 KiB of
/// TLVs, but real proxies send a few hundred bytes at most, and this is
/// memory a client that never finishes costs us.
pub const MAX_HEADER: usize = 4096;

/// How a v1 header starts, and its longest line (CRLF included).
const V1_PREFIX: &[u8] = b"PROXY ";
const V1_MAX: usize = 107;

// PROXY v2 TLV types and PP2_TYPE_SSL client bits (HAProxy's proxy-protocol.txt).
const PP2_TYPE_AUTHORITY: u8 = 0x02;
const PP2_TYPE_SSL: u8 = 0x20;
const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
const PP2_SUBTYPE_SSL_CN: u8 = 0x22;
const PP2_SUBTYPE_SSL_CIPHER: u8 = 0x23;
const PP2_CLIENT_SSL: u8 = 0x01;
const PP2_CLIENT_CERT_CONN: u8 = 0x02;
const PP2_CLIENT_CERT_SESS: u8 = 0x04;

/// Read the PROXY header at the start of `stream` (the caller bounds the time).
pub async fn read_header(stream: &mut TcpStream) -> Result<ProxyInfo, TransportError> {
    let mut buf = vec![0u8; MAX_HEADER];
    // buf[..have] is consumed from the socket: the start of a header.
    let mut have = 0;
    loop {
        // Blocks until bytes beyond `have` arrive (or EOF): no busy loop.
        let n = stream.peek(&mut buf[have..]).await.map_err(io)?;
        if n == 0 {
            return Err(TransportError::handshake(
                Stage::Proxy,
                if have == 0 {
                    "connection closed before a PROXY header".to_owned()
                } else {
                    format!("connection closed after {have} bytes of a PROXY header")
                },
            ));
        }
        match parse(&buf[..have + n])? {
            Some((info, len)) => {
                // Consume exactly the header; the rest belongs to the next stage.
                stream.read_exact(&mut buf[have..len]).await.map_err(io)?;
                return Ok(info);
            }
            None if have + n == buf.len() => {
                return Err(TransportError::handshake(
                    Stage::Proxy,
                    format!("PROXY header longer than {MAX_HEADER} bytes"),
                ));
            }
            None => {
                // All of it is header so far: take it, and wait for more.
                stream
                    .read_exact(&mut buf[have..have + n])
                    .await
                    .map_err(io)?;
                have += n;
            }
        }
    }
}

/// Parse a header at the start of `bytes`: the header and its length, `None`
/// when more bytes are needed, an error when no header can start so.
pub fn parse(bytes: &[u8]) -> Result<Option<(ProxyInfo, usize)>, TransportError> {
    let n = bytes.len();
    if n < v2::PROTOCOL_PREFIX.len() && v2::PROTOCOL_PREFIX.starts_with(bytes)
        || n < V1_PREFIX.len() && V1_PREFIX.starts_with(bytes)
    {
        return Ok(None);
    }
    if bytes.starts_with(V1_PREFIX) {
        // Decide completeness here: ppp reads a line cut inside a field as
        // a bad field, and a line with missing fields as incomplete.
        let Some(end) = bytes.windows(2).position(|w| w == b"\r\n") else {
            return if n < V1_MAX {
                Ok(None)
            } else {
                Err(invalid(bytes, "v1 line longer than 107 bytes"))
            };
        };
        let line = &bytes[..end + 2];
        return match v1::Header::try_from(line) {
            Ok(header) => Ok(Some((from_v1(&header), line.len()))),
            Err(e) => Err(invalid(bytes, e)),
        };
    }
    if bytes.starts_with(v2::PROTOCOL_PREFIX) {
        let result = v2::Header::try_from(bytes);
        if result.is_incomplete() {
            return Ok(None);
        }
        return match result {
            Ok(header) => Ok(Some((from_v2(&header)?, header.len()))),
            Err(e) => Err(invalid(bytes, e)),
        };
    }
    Err(invalid(bytes, "neither the v1 nor the v2 signature"))
}

fn invalid(bytes: &[u8], e: impl std::fmt::Display) -> TransportError {
    let shown: String = bytes
        .iter()
        .take(16)
        .map(|b| {
            if b.is_ascii_graphic() || *b == b' ' {
                char::from(*b).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect();
    TransportError::handshake(
        Stage::Proxy,
        format!("no valid PROXY v1/v2 header ({e}); the connection began with \"{shown}\""),
    )
}

fn from_v1(header: &v1::Header<'_>) -> ProxyInfo {
    let (source, destination) = match header.addresses {
        v1::Addresses::Tcp4(a) => (
            Some(SocketAddr::from((a.source_address, a.source_port))),
            Some(SocketAddr::from((
                a.destination_address,
                a.destination_port,
            ))),
        ),
        v1::Addresses::Tcp6(a) => (
            Some(SocketAddr::from((a.source_address, a.source_port))),
            Some(SocketAddr::from((
                a.destination_address,
                a.destination_port,
            ))),
        ),
        v1::Addresses::Unknown => (None, None),
    };
    ProxyInfo {
        version: 1,
        source,
        destination,
        tls: None,
        authority: None,
    }
}

fn from_v2(header: &v2::Header<'_>) -> Result<ProxyInfo, TransportError> {
    let (source, destination) = match (header.command, header.addresses) {
        // LOCAL: the proxy speaking for itself (health checks); the
        // addresses, if any, mean nothing.
        (Command::Local, _) => (None, None),
        (Command::Proxy, v2::Addresses::IPv4(a)) => (
            Some(SocketAddr::from((a.source_address, a.source_port))),
            Some(SocketAddr::from((
                a.destination_address,
                a.destination_port,
            ))),
        ),
        (Command::Proxy, v2::Addresses::IPv6(a)) => (
            Some(SocketAddr::from((a.source_address, a.source_port))),
            Some(SocketAddr::from((
                a.destination_address,
                a.destination_port,
            ))),
        ),
        (Command::Proxy, v2::Addresses::Unspecified | v2::Addresses::Unix(_)) => (None, None),
    };
    let mut info = ProxyInfo {
        version: 2,
        source,
        destination,
        tls: None,
        authority: None,
    };
    for tlv in header.tlvs() {
        let tlv = tlv.map_err(|e| {
            TransportError::handshake(Stage::Proxy, format!("malformed PROXY v2 TLV: {e}"))
        })?;
        match tlv.kind {
            PP2_TYPE_AUTHORITY => info.authority = Some(text(&tlv.value)),
            PP2_TYPE_SSL => info.tls = Some(ssl_tlv(&tlv.value)?),
            _ => {}
        }
    }
    Ok(info)
}

/// `PP2_TYPE_SSL`: client (1 byte), verify (4 bytes), then sub-TLVs.
fn ssl_tlv(value: &[u8]) -> Result<ProxyTls, TransportError> {
    let malformed = |what: &str| {
        TransportError::handshake(Stage::Proxy, format!("malformed PP2_TYPE_SSL: {what}"))
    };
    let Some((&client, rest)) = value.split_first() else {
        return Err(malformed("empty"));
    };
    let Some((verify, mut subs)) = rest.split_first_chunk::<4>() else {
        return Err(malformed("no verify field"));
    };
    let mut tls = ProxyTls {
        client_cert_verified: client & PP2_CLIENT_SSL != 0
            && client & (PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS) != 0
            && u32::from_be_bytes(*verify) == 0,
        ..ProxyTls::default()
    };
    while !subs.is_empty() {
        let Some((&[kind, hi, lo], rest)) = subs.split_first_chunk::<3>() else {
            return Err(malformed("truncated sub-TLV"));
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if rest.len() < len {
            return Err(malformed("sub-TLV longer than the TLV"));
        }
        let (value, rest) = rest.split_at(len);
        match kind {
            PP2_SUBTYPE_SSL_VERSION => tls.version = Some(text(value)),
            PP2_SUBTYPE_SSL_CN => tls.common_name = Some(text(value)),
            PP2_SUBTYPE_SSL_CIPHER => tls.cipher = Some(text(value)),
            _ => {}
        }
        subs = rest;
    }
    Ok(tls)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn io(source: std::io::Error) -> TransportError {
    TransportError::Io {
        stage: Stage::Proxy,
        source,
    }
}

/// Build PROXY headers, for tests and tools that play the proxy.
pub mod build {
    use super::*;

    /// `PROXY TCP4|TCP6 src dst sport dport\r\n`.
    pub fn v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
        let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
        format!(
            "PROXY {family} {} {} {} {}\r\n",
            source.ip(),
            destination.ip(),
            source.port(),
            destination.port()
        )
        .into_bytes()
    }

    /// A v2 PROXY header over TCP, with the TLS TLV when `tls` is given.
    pub fn v2(
        source: SocketAddr,
        destination: SocketAddr,
        tls: Option<&ProxyTls>,
    ) -> Result<Vec<u8>, std::io::Error> {
        let mut builder = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (source, destination),
        );
        if let Some(tls) = tls {
            builder = builder.write_tlv(PP2_TYPE_SSL, ssl_value(tls).as_slice())?;
        }
        builder.build()
    }

    fn ssl_value(tls: &ProxyTls) -> Vec<u8> {
        let mut client = PP2_CLIENT_SSL;
        if tls.client_cert_verified {
            client |= PP2_CLIENT_CERT_CONN;
        }
        let mut out = vec![client, 0, 0, 0, 0];
        let subs: [(u8, &Option<String>); 3] = [
            (PP2_SUBTYPE_SSL_VERSION, &tls.version),
            (PP2_SUBTYPE_SSL_CN, &tls.common_name),
            (PP2_SUBTYPE_SSL_CIPHER, &tls.cipher),
        ];
        for (kind, value) in subs {
            if let Some(value) = value {
                let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
                out.push(kind);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&value.as_bytes()[..usize::from(len)]);
            }
        }
        out
    }

    /// v2 `LOCAL`: a proxy's own connection (health check).
    pub fn v2_local() -> Vec<u8> {
        let mut out = v2::PROTOCOL_PREFIX.to_vec();
        out.extend_from_slice(&[0x20, 0x00, 0, 0]);
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_tcp4_and_tcp6() {
        let bytes = build::v1(addr("203.0.113.7:4242"), addr("10.0.0.1:1883"));
        let mut with_rest = bytes.clone();
        with_rest.extend_from_slice(b"\x10MQTT");
        let (info, len) = parse(&with_rest).unwrap().unwrap();
        assert_eq!(len, bytes.len());
        assert_eq!(info.version, 1);
        assert_eq!(info.source, Some(addr("203.0.113.7:4242")));
        assert_eq!(info.destination, Some(addr("10.0.0.1:1883")));

        let bytes = build::v1(addr("[2001:db8::1]:5"), addr("[2001:db8::2]:1883"));
        let (info, _) = parse(&bytes).unwrap().unwrap();
        assert_eq!(info.source, Some(addr("[2001:db8::1]:5")));
    }

    #[test]
    fn v1_unknown_has_no_address() {
        let (info, len) = parse(b"PROXY UNKNOWN\r\nrest").unwrap().unwrap();
        assert_eq!(len, 15);
        assert_eq!(info.source, None);
    }

    #[test]
    fn v2_with_tls_tlvs() {
        let tls = ProxyTls {
            version: Some("TLSv1.3".into()),
            cipher: Some("TLS_AES_128_GCM_SHA256".into()),
            common_name: Some("device-7".into()),
            client_cert_verified: true,
        };
        let bytes = build::v2(
            addr("198.51.100.9:40000"),
            addr("10.0.0.1:8883"),
            Some(&tls),
        )
        .unwrap();
        let mut with_rest = bytes.clone();
        with_rest.extend_from_slice(b"\x16\x03\x01");
        let (info, len) = parse(&with_rest).unwrap().unwrap();
        assert_eq!(len, bytes.len());
        assert_eq!(info.version, 2);
        assert_eq!(info.source, Some(addr("198.51.100.9:40000")));
        assert_eq!(info.tls, Some(tls));
    }

    #[test]
    fn v2_local_is_the_proxy_itself() {
        let (info, len) = parse(&build::v2_local()).unwrap().unwrap();
        assert_eq!(len, 16);
        assert_eq!(info.source, None);
    }

    #[test]
    fn partial_headers_ask_for_more() {
        let v1 = build::v1(addr("1.2.3.4:5"), addr("5.6.7.8:9"));
        let v2 = build::v2(addr("1.2.3.4:5"), addr("5.6.7.8:9"), None).unwrap();
        for full in [v1, v2] {
            for cut in 0..full.len() {
                assert!(
                    parse(&full[..cut]).unwrap().is_none(),
                    "{cut}: {:?}",
                    &full[..cut]
                );
            }
        }
    }

    #[test]
    fn garbage_is_refused_with_what_came() {
        for garbage in [
            &b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c"[..],
            b"GET /mqtt HTTP/1.1\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"PROXY TCP4 1.2.3.4\r\n",
            b"PROXY TCP4 999.2.3.4 1.1.1.1 1 2\r\n",
            b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c",
        ] {
            let e = parse(garbage).expect_err("refused");
            assert!(e.to_string().starts_with("PROXY protocol header: "), "{e}");
        }
        let e = parse(b"\x10\x0c\x00\x04MQTT").unwrap_err().to_string();
        assert!(e.contains(r#"began with "\x10\x0c\x00\x04MQTT""#), "{e}");
    }

    #[test]
    fn truncated_ssl_tlv_is_refused() {
        assert!(ssl_tlv(&[]).is_err());
        assert!(ssl_tlv(&[1, 0, 0]).is_err());
        assert!(ssl_tlv(&[1, 0, 0, 0, 0, 0x22, 0, 9, b'a']).is_err());
        let tls = ssl_tlv(&[5, 0, 0, 0, 1, 0x22, 0, 1, b'a']).unwrap();
        assert!(!tls.client_cert_verified, "verify != 0 means not verified");
    }
}
