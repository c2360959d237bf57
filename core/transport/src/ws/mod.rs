//! MQTT over WebSocket (MQTT 5 section 6): the server side of the upgrade,
//! and [`WsStream`], which turns binary frames back into a byte stream.
//!
//! The upgrade is refused with a plain-text HTTP error a person can read
//! when the path is not the configured one (404) or the client offers only
//! subprotocols other than `mqtt` / `mqttv3.1` (400). A client offering none
//! is served: some embedded clients omit the header.

// The refusal type is tungstenite's callback contract, not ours to shrink.
#![allow(clippy::result_large_err)]

mod stream;

use std::net::IpAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub use stream::WsStream;

use crate::error::{Stage, TransportError};
use crate::meta::WsInfo;
use crate::settings::WsSettings;

/// The subprotocols MQTT registers: `mqtt` (3.1.1 and 5) and `mqttv3.1`.
pub const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Read buffer per connection: small, since idle clients are the majority.
const READ_BUFFER: usize = 4096;

/// Answer the HTTP upgrade on `io`.
pub async fn accept<S>(
    io: S,
    settings: &WsSettings,
) -> Result<(WsStream<S>, WsInfo), TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut info = None;
    let callback = |request: &Request, response: Response| {
        let (response, accepted) = check_request(request, response, settings)?;
        info = Some(accepted);
        Ok(response)
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        // Each write of the broker becomes one frame, sent at once: the
        // broker already coalesces packets.
        .write_buffer_size(0)
        .max_message_size(Some(settings.max_message_size))
        .max_frame_size(Some(settings.max_message_size));
    let ws = tokio_tungstenite::accept_hdr_async_with_config(io, callback, Some(config))
        .await
        .map_err(|e| match e {
            WsError::Http(response) => TransportError::handshake(
                Stage::WebSocket,
                format!(
                    "refused with HTTP {}: {}",
                    response.status(),
                    String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                        .trim_end()
                ),
            ),
            WsError::Io(source) => TransportError::Io {
                stage: Stage::WebSocket,
                source,
            },
            other => TransportError::handshake(Stage::WebSocket, other),
        })?;
    let info = info.ok_or_else(|| {
        TransportError::handshake(Stage::WebSocket, "upgrade finished without a request")
    })?;
    Ok((WsStream::new(ws), info))
}

/// Decide on an upgrade request: the response to send, or the refusal.
fn check_request(
    request: &Request,
    mut response: Response,
    settings: &WsSettings,
) -> Result<(Response, WsInfo), ErrorResponse> {
    let path = request.uri().path();
    if path != settings.path {
        return Err(refusal(
            StatusCode::NOT_FOUND,
            format!(
                "no MQTT endpoint at {path}; MQTT over WebSocket is served at {}",
                settings.path
            ),
        ));
    }
    let offered: Vec<&str> = request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let chosen = offered
        .iter()
        .find(|p| SUBPROTOCOLS.iter().any(|s| s.eq_ignore_ascii_case(p)))
        .copied();
    if !offered.is_empty() && chosen.is_none() {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            format!(
                "unsupported WebSocket subprotocol {}; this endpoint speaks {}",
                offered.join(", "),
                SUBPROTOCOLS.join(", ")
            ),
        ));
    }
    if let Some(chosen) = chosen {
        // RFC 6455 4.2.2: echo one of the client's values exactly as sent.
        let value = HeaderValue::from_str(chosen).map_err(|_| {
            refusal(
                StatusCode::BAD_REQUEST,
                "unreadable Sec-WebSocket-Protocol".to_owned(),
            )
        })?;
        response
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    let forwarded_for = if settings.trust_forwarded_for {
        forwarded_for(request)
    } else {
        None
    };
    Ok((
        response,
        WsInfo {
            path: path.to_owned(),
            subprotocol: chosen.map(str::to_owned),
            forwarded_for,
        },
    ))
}

/// The last `X-Forwarded-For` entry: the address our trusted proxy saw.
/// Earlier entries were written by whoever the client was, so they prove nothing.
fn forwarded_for(request: &Request) -> Option<IpAddr> {
    let last = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .rfind(|v| !v.is_empty())?;
    last.parse().ok()
}

fn refusal(status: StatusCode, text: String) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(format!("{text}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn request(path: &str, headers: &[(&str, &str)]) -> Request {
        let mut builder = Request::builder().uri(path);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(()).unwrap()
    }

    fn check(
        path: &str,
        headers: &[(&str, &str)],
        settings: &WsSettings,
    ) -> Result<(Response, WsInfo), ErrorResponse> {
        check_request(&request(path, headers), Response::new(()), settings)
    }

    #[test]
    fn mqtt_is_chosen_and_echoed() {
        let s = WsSettings::default();
        let (resp, info) = check(
            "/mqtt",
            &[("Sec-WebSocket-Protocol", "chat, MQTT, mqttv3.1")],
            &s,
        )
        .unwrap();
        assert_eq!(resp.headers()["sec-websocket-protocol"], "MQTT");
        assert_eq!(info.subprotocol.as_deref(), Some("MQTT"));
        let (resp, _) = check("/mqtt", &[("Sec-WebSocket-Protocol", "mqttv3.1")], &s).unwrap();
        assert_eq!(resp.headers()["sec-websocket-protocol"], "mqttv3.1");
        let (resp, info) = check("/mqtt?x=1", &[], &s).unwrap();
        assert!(resp.headers().get("sec-websocket-protocol").is_none());
        assert_eq!(info.subprotocol, None);
    }

    #[test]
    fn other_paths_and_subprotocols_are_refused() {
        let s = WsSettings::default();
        let e = check("/", &[], &s).unwrap_err();
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        assert!(e.body().as_deref().unwrap().contains("served at /mqtt"));
        let e = check(
            "/mqtt",
            &[("Sec-WebSocket-Protocol", "chat, superchat")],
            &s,
        )
        .unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e.body().as_deref().unwrap().contains("chat, superchat"));
    }

    #[test]
    fn forwarded_for_only_when_trusted_and_last_entry() {
        let headers = [("X-Forwarded-For", "1.1.1.1, 203.0.113.5")];
        let (_, info) = check("/mqtt", &headers, &WsSettings::default()).unwrap();
        assert_eq!(info.forwarded_for, None);
        let trusting = WsSettings {
            trust_forwarded_for: true,
            ..WsSettings::default()
        };
        let (_, info) = check("/mqtt", &headers, &trusting).unwrap();
        assert_eq!(info.forwarded_for, Some("203.0.113.5".parse().unwrap()));
        let (_, info) = check("/mqtt", &[("X-Forwarded-For", "garbage")], &trusting).unwrap();
        assert_eq!(info.forwarded_for, None);
    }
}
