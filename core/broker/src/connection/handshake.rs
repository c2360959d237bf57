//! CONNECT: validation, authentication (plain and MQTT 5 enhanced), session
//! attach and CONNACK.

use std::time::Duration;

use bytes::Bytes;
use std::sync::Arc;

use fogg_api::{AclRules, AuthStep, ClientInfo, ConnectInfo, EnhancedAuthContext, SessionKey};
use fogg_codec::{
    Auth, ConnAck, Connect, DecodeError, Packet, Properties, ProtocolVersion, ReasonCode, topic,
};
use tokio::io::{AsyncRead, AsyncWrite};

use super::authz::{AclStamp, ChainAnswer, run_chain};
use super::{Accepted, Client, Connection, ReadError};
use crate::lifecycle;
use crate::metrics::Metrics;

/// What became of a CONNECT that was read but refused.
struct Refusal {
    reason: ReasonCode,
    why: String,
}

fn refuse(reason: ReasonCode, why: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        why: why.into(),
    }
}

/// Outcome of the authentication step.
struct Authenticated {
    /// Enhanced authentication method and the data for CONNACK.
    method: Option<String>,
    data: Option<Bytes>,
    /// The rules the authenticating backend handed over for this connection.
    acl: Option<Arc<AclRules>>,
    /// The credentials that obtained `acl`, to fetch it again later.
    credentials: Option<ConnectInfo>,
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Read and answer CONNECT. `None` when the connection must close.
    pub(super) async fn handshake(
        &mut self,
        over_limit: bool,
        origin: &Accepted,
    ) -> Option<Box<Client>> {
        let deadline = self.broker.settings.connect_timeout;
        let connect = match tokio::time::timeout(deadline, self.read_connect()).await {
            Err(_) => {
                tracing::info!(timeout = ?deadline, "no CONNECT in time; closing");
                return None;
            }
            Ok(Ok(connect)) => connect?,
            Ok(Err(e)) => {
                tracing::info!(error = %e, "bad CONNECT; closing");
                return None;
            }
        };
        let connect = self.with_identity(connect, origin);
        self.version = connect.protocol;
        self.peer_max_packet_size = connect.properties.maximum_packet_size.unwrap_or(u32::MAX);
        // An empty id is recorded once the broker has assigned one.
        if !connect.client_id.is_empty() {
            tracing::Span::current().record("client_id", connect.client_id.as_str());
        }
        if over_limit {
            // 0x97: the client is over a configured quota (max_connections);
            // 3.1/3.1.1 get 0x03 Server unavailable, their closest code.
            Metrics::add(&self.broker.metrics.connections_refused, 1);
            Metrics::add(&self.broker.overload.over_cap, 1);
            tracing::info!("CONNECT refused: max_connections reached");
            self.send_connack_error(refuse(
                ReasonCode::QuotaExceeded,
                "connection limit reached",
            ));
            return None;
        }
        if self.broker.overload.is_overloaded() {
            // 0x89: the server as a whole is too busy right now (load
            // shedding); 3.1/3.1.1 get 0x03 Server unavailable.
            Metrics::add(&self.broker.metrics.connections_refused, 1);
            Metrics::add(&self.broker.overload.refused, 1);
            tracing::info!("CONNECT refused: broker overloaded");
            self.send_connack_error(refuse(
                ReasonCode::ServerBusy,
                "server busy: overloaded, try again later",
            ));
            return None;
        }
        match self.accept(connect, origin).await {
            Ok(client) => Some(client),
            Err(refusal) => {
                Metrics::add(&self.broker.metrics.connections_refused, 1);
                tracing::info!(reason = %refusal.reason, why = %refusal.why, "CONNECT refused");
                self.send_connack_error(refusal);
                None
            }
        }
    }

    /// Read the first packet, which must be CONNECT [MQTT-3.1.0-1]. A CONNECT
    /// that cannot be decoded is answered with the CONNACK the spec asks for
    /// where the protocol level can be told.
    async fn read_connect(&mut self) -> Result<Option<Box<Connect>>, ReadError> {
        loop {
            let level = peek_connect_level(&self.rbuf);
            match fogg_codec::decode(
                &mut self.rbuf,
                ProtocolVersion::V5,
                self.broker.settings.max_packet_size,
            ) {
                Ok(Some(Packet::Connect(connect))) => return Ok(Some(connect)),
                Ok(Some(other)) => {
                    tracing::info!(
                        packet = other.name(),
                        "[MQTT-3.1.0-1] the first packet must be CONNECT; closing"
                    );
                    return Ok(None);
                }
                Ok(None) => {}
                Err(e) => {
                    self.answer_bad_connect(&e, level);
                    return Err(ReadError::Decode(e));
                }
            }
            if !self.fill_read_buffer().await? {
                return Ok(None);
            }
        }
    }

    fn answer_bad_connect(&mut self, e: &DecodeError, level: Option<u8>) {
        if e.reason == ReasonCode::UnsupportedProtocolVersion {
            // [MQTT-3.1.2-2]: answer 0x01 in the 3.1.1 format the client may understand.
            self.version = ProtocolVersion::V3_1_1;
            self.send(&Packet::ConnAck(Box::new(ConnAck {
                reason: ReasonCode::UnsupportedProtocolVersion,
                ..ConnAck::default()
            })));
        } else if level == Some(5) {
            self.version = ProtocolVersion::V5;
            self.send_connack_error(refuse(e.reason, format!("{} {}", e.rule, e.detail)));
        }
    }

    fn send_connack_error(&mut self, refusal: Refusal) {
        let mut properties = Properties::default();
        if self.version.is_v5() {
            properties.reason_string = Some(refusal.why);
        }
        let mut ack = ConnAck {
            session_present: false,
            reason: refusal.reason,
            properties,
        };
        // [MQTT-3.2.2-19]: no reason string beyond the client's Maximum Packet Size.
        if fogg_codec::encoded_len(&Packet::ConnAck(Box::new(ack.clone())), self.version)
            > self.peer_max_packet_size as usize
        {
            ack.properties = Properties::default();
        }
        self.send(&Packet::ConnAck(Box::new(ack)));
    }

    async fn accept(
        &mut self,
        connect: Box<Connect>,
        origin: &Accepted,
    ) -> Result<Box<Client>, Refusal> {
        let broker = self.broker.clone();
        let settings = &broker.settings;
        let v5 = connect.protocol.is_v5();
        let props = connect.properties.clone();

        // Client identifier.
        let mut client_id = connect.client_id.clone();
        let mut assigned = None;
        if client_id.is_empty() {
            match connect.protocol {
                ProtocolVersion::V5 => {}
                ProtocolVersion::V3_1_1 if connect.clean_start => {}
                ProtocolVersion::V3_1_1 => {
                    return Err(refuse(
                        ReasonCode::ClientIdentifierNotValid,
                        "[MQTT-3.1.3-8] an empty client id needs clean session",
                    ));
                }
                ProtocolVersion::V3_1 => {
                    return Err(refuse(
                        ReasonCode::ClientIdentifierNotValid,
                        "MQTT 3.1 requires a client id of 1 to 23 characters",
                    ));
                }
            }
            client_id = format!("fogg-{:016x}", rand::random::<u64>());
            if v5 {
                assigned = Some(client_id.clone());
            }
            tracing::Span::current().record("client_id", client_id.as_str());
        }

        // Keep alive, capped by max_keepalive.
        let mut keep_alive = connect.keep_alive;
        let mut server_keep_alive = None;
        let max_ka = settings.max_keepalive;
        if max_ka > 0 && (keep_alive == 0 || keep_alive > max_ka) {
            if v5 {
                keep_alive = max_ka;
                server_keep_alive = Some(max_ka);
            } else {
                // 3.1/3.1.1 cannot be told another keep alive (mosquitto does the same).
                return Err(refuse(
                    ReasonCode::ClientIdentifierNotValid,
                    format!("keep alive {keep_alive}s exceeds max_keepalive {max_ka}s"),
                ));
            }
        }

        // Session expiry.
        let requested_expiry = if v5 {
            props.session_expiry_interval.unwrap_or(0)
        } else if connect.clean_start {
            0
        } else {
            u32::MAX
        };
        let mut session_expiry = requested_expiry;
        if settings.max_session_expiry > 0 && session_expiry > settings.max_session_expiry {
            session_expiry = settings.max_session_expiry;
        }

        // Will.
        if let Some(will) = &connect.will {
            if let Err(e) = topic::validate_topic_name(&will.topic) {
                return Err(refuse(
                    ReasonCode::TopicNameInvalid,
                    format!("will topic: {} {}", e.rule, e.detail),
                ));
            }
            if will.retain && !settings.retain_available {
                return Err(refuse(
                    ReasonCode::RetainNotSupported,
                    "[MQTT-3.2.2-14] will retain requested but retain is not available",
                ));
            }
        }

        let auth = self.authenticate(&connect, &client_id, origin).await?;

        let info = ClientInfo {
            client_id: client_id.clone(),
            username: connect.username.clone(),
            mountpoint: self.listener.mountpoint.clone(),
            peer: origin.peer,
            protocol: connect.protocol,
        };
        let key = SessionKey::new(self.listener.mountpoint.clone(), client_id.clone());
        let generation = self.broker.next_generation();
        let attached = lifecycle::attach(
            &self.broker,
            lifecycle::AttachRequest {
                key,
                clean_start: connect.clean_start,
                expiry: session_expiry,
                protocol: connect.protocol,
                send_window: self.send_window(props.receive_maximum.unwrap_or(u16::MAX)),
                limits: self.listener.limits,
                generation,
            },
        )
        .await;

        let mut ack_props = Properties::default();
        if v5 {
            if session_expiry != requested_expiry {
                ack_props.session_expiry_interval = Some(session_expiry);
            }
            if settings.receive_maximum != u16::MAX {
                ack_props.receive_maximum = Some(settings.receive_maximum);
            }
            if !settings.retain_available {
                ack_props.retain_available = Some(0);
            }
            if settings.max_packet_size < fogg_codec::MAX_REMAINING_LENGTH as u32 {
                ack_props.maximum_packet_size = Some(settings.max_packet_size);
            }
            ack_props.assigned_client_identifier = assigned;
            if settings.topic_alias_maximum > 0 {
                ack_props.topic_alias_maximum = Some(settings.topic_alias_maximum);
            }
            ack_props.server_keep_alive = server_keep_alive;
            if props.request_response_information == Some(1) {
                ack_props.response_information = Some(format!("response/{client_id}"));
            }
            ack_props.authentication_method = auth.method.clone();
            ack_props.authentication_data = auth.data;
        }
        self.send(&Packet::ConnAck(Box::new(ConnAck {
            session_present: attached.session_present,
            reason: ReasonCode::Success,
            properties: ack_props,
        })));
        Metrics::add(&self.broker.metrics.clients_connected, 1);
        Metrics::add(&self.broker.metrics.clients_total_connects, 1);
        tracing::info!(
            protocol = ?connect.protocol,
            clean_start = connect.clean_start,
            session_present = attached.session_present,
            keep_alive,
            "client connected"
        );

        let connect = *connect;
        // Who the session is connected as, for `invalidate_acl` by username.
        attached.session.state.lock().username = info.username.clone();
        let acl_stamp = AclStamp::new(
            &self.broker,
            attached
                .session
                .acl_epoch
                .load(std::sync::atomic::Ordering::Acquire),
            auth.credentials,
        );
        Ok(Box::new(Client {
            session: attached.session,
            generation,
            info,
            keep_alive: Duration::from_secs(u64::from(keep_alive)),
            will: connect.will.map(Box::new),
            session_expiry,
            max_packet_size: props.maximum_packet_size.unwrap_or(u32::MAX),
            client_alias_max: if v5 {
                props.topic_alias_maximum.unwrap_or(0)
            } else {
                0
            },
            aliases: None,
            auth_method: auth.method,
            reauth: None,
            publish_acl: None,
            acl: auth.acl,
            acl_stamp,
        }))
    }

    /// The outgoing inflight window: the client's Receive Maximum, capped by
    /// the listener's `max_inflight_messages`.
    fn send_window(&self, receive_maximum: u16) -> u16 {
        match self.listener.max_inflight {
            0 => receive_maximum,
            max => receive_maximum.min(max),
        }
    }

    /// Enhanced authentication when CONNECT names a method, else the backend
    /// chain with the anonymous policy.
    async fn authenticate(
        &mut self,
        connect: &Connect,
        client_id: &str,
        origin: &Accepted,
    ) -> Result<Authenticated, Refusal> {
        if let Some(method) = connect.properties.authentication_method.clone() {
            let data = connect.properties.authentication_data.clone();
            return self
                .enhanced_auth(method, data, client_id, connect.username.clone())
                .await;
        }
        let info = ConnectInfo {
            client_id: client_id.to_owned(),
            username: connect.username.clone(),
            password: connect.password.clone(),
            mountpoint: self.listener.mountpoint.clone(),
            peer: origin.peer,
            listener: self.listener.name.clone(),
            protocol: connect.protocol,
            clean_start: connect.clean_start,
        };
        let asked = match run_chain(&self.broker, &info).await {
            ChainAnswer::Allowed(acl) => {
                // Kept to fetch the rules again after an invalidation or
                // `acl_cache_ttl` (see `authz`).
                let credentials = acl.is_some().then_some(info);
                return Ok(Authenticated {
                    method: None,
                    data: None,
                    acl,
                    credentials,
                });
            }
            ChainAnswer::Denied { backend } => {
                return Err(refuse(
                    ReasonCode::BadUserNameOrPassword,
                    format!("denied by backend `{backend}`"),
                ));
            }
            ChainAnswer::Unavailable => {
                return Err(refuse(
                    ReasonCode::ServerUnavailable,
                    "authentication backend unavailable",
                ));
            }
            ChainAnswer::Undecided { asked } => asked,
        };
        let anonymous = connect.username.is_none();
        let allowed = if origin.identity.is_some() {
            // A client certificate the listener verified authenticates the
            // client when no backend decides (use_identity_as_username).
            true
        } else if asked {
            anonymous && self.broker.allow_anonymous
        } else {
            self.broker.allow_anonymous
        };
        if allowed {
            Ok(Authenticated {
                method: None,
                data: None,
                acl: None,
                credentials: None,
            })
        } else if anonymous {
            Err(refuse(
                ReasonCode::NotAuthorized,
                "anonymous clients are not allowed",
            ))
        } else {
            Err(refuse(
                ReasonCode::BadUserNameOrPassword,
                "no backend accepted these credentials",
            ))
        }
    }

    /// MQTT 5 enhanced authentication (spec 4.12): AUTH 0x18 rounds until the
    /// backend says success or failure.
    async fn enhanced_auth(
        &mut self,
        method: String,
        mut data: Option<Bytes>,
        client_id: &str,
        username: Option<String>,
    ) -> Result<Authenticated, Refusal> {
        let Some(backend) = self.broker.enhanced_for(&method) else {
            return Err(refuse(
                ReasonCode::BadAuthenticationMethod,
                format!("authentication method `{method}` is not served here"),
            ));
        };
        let mut context = EnhancedAuthContext {
            client_id: client_id.to_owned(),
            username,
            mountpoint: self.listener.mountpoint.clone(),
            method: method.clone(),
            round: 0,
            reauthenticate: false,
            state: None,
        };
        loop {
            let step = backend
                .auth_step(&context, data.take())
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "enhanced authentication backend failed");
                    refuse(
                        ReasonCode::ServerUnavailable,
                        "authentication backend unavailable",
                    )
                })?;
            match step {
                AuthStep::Success { data } => {
                    return Ok(Authenticated {
                        method: Some(method),
                        data,
                        acl: None,
                        credentials: None,
                    });
                }
                AuthStep::Failure => {
                    return Err(refuse(
                        ReasonCode::NotAuthorized,
                        "enhanced authentication failed",
                    ));
                }
                AuthStep::Continue {
                    data: challenge,
                    state,
                } => {
                    context.state = state;
                    context.round += 1;
                    self.send(&Packet::Auth(Box::new(Auth {
                        reason: ReasonCode::ContinueAuthentication,
                        properties: Properties {
                            authentication_method: Some(method.clone()),
                            authentication_data: challenge,
                            ..Properties::default()
                        },
                    })));
                    if self.flush().await.is_err() {
                        return Err(refuse(ReasonCode::UnspecifiedError, "connection lost"));
                    }
                    let deadline = self.broker.settings.connect_timeout;
                    let next = tokio::time::timeout(deadline, self.read_packet()).await;
                    match next {
                        Ok(Ok(Some(Packet::Auth(auth))))
                            if auth.reason == ReasonCode::ContinueAuthentication =>
                        {
                            if auth.properties.authentication_method.as_deref() != Some(&method) {
                                return Err(refuse(
                                    ReasonCode::ProtocolError,
                                    "[MQTT-4.12.0-5] AUTH must carry the CONNECT's authentication method",
                                ));
                            }
                            data = auth.properties.authentication_data;
                        }
                        Ok(Ok(Some(other))) => {
                            return Err(refuse(
                                ReasonCode::ProtocolError,
                                format!(
                                    "[MQTT-4.12.0-4] expected AUTH 0x18 during authentication, got {}",
                                    other.name()
                                ),
                            ));
                        }
                        Ok(Ok(None)) | Ok(Err(ReadError::Io(_))) => {
                            return Err(refuse(ReasonCode::UnspecifiedError, "connection lost"));
                        }
                        Ok(Err(ReadError::Decode(e))) => {
                            return Err(refuse(e.reason, format!("{} {}", e.rule, e.detail)));
                        }
                        Err(_) => {
                            return Err(refuse(
                                ReasonCode::NotAuthorized,
                                "authentication did not complete in time",
                            ));
                        }
                    }
                }
            }
        }
    }
}

/// The protocol level of a CONNECT at the front of `buf`, if readable.
fn peek_connect_level(buf: &[u8]) -> Option<u8> {
    if buf.first()? >> 4 != 1 {
        return None;
    }
    // Skip the variable byte integer remaining length.
    let mut i = 1;
    while buf.get(i)? & 0x80 != 0 {
        i += 1;
        if i > 4 {
            return None;
        }
    }
    i += 1;
    let name_len = usize::from(u16::from_be_bytes([*buf.get(i)?, *buf.get(i + 1)?]));
    buf.get(i + 2 + name_len).copied()
}

#[cfg(test)]
mod tests {
    use super::peek_connect_level;

    #[test]
    fn peeks_level() {
        let v5 = [0x10, 0x10, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02];
        assert_eq!(peek_connect_level(&v5), Some(5));
        let v3 = [
            0x10, 0x10, 0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03,
        ];
        assert_eq!(peek_connect_level(&v3), Some(3));
        assert_eq!(peek_connect_level(&[0x10]), None);
        assert_eq!(peek_connect_level(&[0x30, 0x00]), None);
    }
}
