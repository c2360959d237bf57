//! Handling of every packet a connected client may send.

use std::sync::Arc;

use fogg_api::{
    AuthStep, DeliveryStage, DeliveryState, EnhancedAuthContext, PublishDecision, PublishModifiers,
    PublishRequest, SubscribeDecision, SubscribeRequest, SubscriptionRewrite,
};
use fogg_codec::{
    AckProperties, Auth, Packet, Properties, PubAck, Publish, QoS, ReasonCode, RetainHandling,
    SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe, topic,
};
use tokio::io::{AsyncRead, AsyncWrite};

use super::pipeline::{Pipelined, Routed};
use super::{Client, Close, Connection};
use crate::acl::Source;
use crate::message::{Delivery, Message};
use crate::metrics::Metrics;
use crate::session::InflightStage;
use crate::topics::{ParsedFilter, parse_filter};

fn violation(reason: ReasonCode, why: impl Into<String>) -> Option<Close> {
    Some(Close::Server(reason, why.into()))
}

/// Apply what an authorizer changed (VerneMQ's publish modifiers). They are
/// not checked against the ACL again, as in VerneMQ, but a topic must still
/// be a valid topic name.
fn apply_modifiers(
    publish: &mut Publish,
    mountpoint: &mut Option<String>,
    modifiers: PublishModifiers,
) -> Result<(), &'static str> {
    if let Some(topic) = modifiers.topic {
        if topic::validate_topic_name(&topic).is_err() || topic.starts_with('$') {
            return Err("modified topic is not a valid topic name");
        }
        publish.topic = topic;
    }
    if let Some(payload) = modifiers.payload {
        publish.payload = payload;
    }
    if let Some(qos) = modifiers.qos {
        publish.qos = qos;
    }
    if let Some(retain) = modifiers.retain {
        publish.retain = retain;
    }
    if let Some(m) = modifiers.mountpoint {
        *mountpoint = Some(m);
    }
    Ok(())
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    pub(super) async fn handle(&mut self, client: &mut Client, packet: Packet) -> Option<Close> {
        match packet {
            Packet::Publish(publish) => {
                // Stale ACL answers are fetched again first (see `authz`).
                if let Some(close) = self.refresh_acl(client).await {
                    return Some(close);
                }
                // Boxed by the decoder: every await below moves only the
                // box, and the message takes its parts without copying.
                self.on_publish(client, publish).await
            }
            Packet::PubAck(ack) => {
                let mut state = client.session.state.lock();
                if !state.complete(ack.packet_id, InflightStage::Qos1Sent) {
                    tracing::debug!(packet_id = ack.packet_id, "PUBACK for an unknown packet id");
                }
                None
            }
            Packet::PubRec(rec) => {
                let (known, stored) = {
                    let mut state = client.session.state.lock();
                    if rec.reason.is_error() {
                        state.abandon(rec.packet_id);
                        return None;
                    }
                    (
                        state.received(rec.packet_id),
                        state.stored_seq(rec.packet_id),
                    )
                };
                if let (true, Some(seq)) = (known, stored) {
                    // Stored before PUBREL leaves: after a restart the
                    // exchange resumes with PUBREL, never a second PUBLISH.
                    let state = DeliveryState {
                        packet_id: rec.packet_id,
                        stage: DeliveryStage::Released,
                    };
                    if let Err(e) = self
                        .broker
                        .services
                        .messages
                        .set_delivery_state(&client.session.key, seq, Some(state))
                        .await
                    {
                        tracing::warn!(error = %e, "could not record a released QoS 2 delivery in the store");
                    }
                }
                let mut rel = PubAck::new(rec.packet_id);
                if !known {
                    rel.reason = ReasonCode::PacketIdentifierNotFound;
                }
                self.send(&Packet::PubRel(rel));
                None
            }
            Packet::PubComp(comp) => {
                let mut state = client.session.state.lock();
                if !state.complete(comp.packet_id, InflightStage::Released) {
                    tracing::debug!(
                        packet_id = comp.packet_id,
                        "PUBCOMP for an unknown packet id"
                    );
                }
                None
            }
            Packet::PubRel(rel) => {
                let known = client
                    .session
                    .state
                    .lock()
                    .incoming_qos2
                    .remove(&rel.packet_id);
                if known && client.session.is_stored() {
                    // Cleared before PUBCOMP, or a restart would take the
                    // client's next PUBLISH with this id for a resend.
                    self.store_incoming_qos2(client, rel.packet_id, false).await;
                }
                let mut comp = PubAck::new(rel.packet_id);
                if !known {
                    comp.reason = ReasonCode::PacketIdentifierNotFound;
                }
                self.send(&Packet::PubComp(comp));
                None
            }
            Packet::Subscribe(subscribe) => {
                if let Some(close) = self.refresh_acl(client).await {
                    return Some(close);
                }
                self.on_subscribe(client, subscribe).await
            }
            Packet::Unsubscribe(unsubscribe) => {
                self.on_unsubscribe(client, unsubscribe).await;
                None
            }
            Packet::PingReq => {
                self.send(&Packet::PingResp);
                None
            }
            Packet::Disconnect(disconnect) => {
                if let Some(expiry) = disconnect.properties.session_expiry_interval {
                    if client.session_expiry == 0 && expiry != 0 {
                        return violation(
                            ReasonCode::ProtocolError,
                            "[MQTT-3.14.2-2] session expiry cannot be set at DISCONNECT when CONNECT had 0",
                        );
                    }
                    client.session_expiry = self.cap_expiry(expiry);
                }
                if disconnect.reason == ReasonCode::DisconnectWithWill {
                    Some(Close::NormalWithWill)
                } else {
                    Some(Close::Normal)
                }
            }
            Packet::Auth(auth) => self.on_auth(client, auth).await,
            Packet::Connect(_) => violation(
                ReasonCode::ProtocolError,
                "[MQTT-3.1.0-2] a second CONNECT is a protocol violation",
            ),
            other @ (Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp) => violation(
                ReasonCode::ProtocolError,
                format!("{} is sent by servers only", other.name()),
            ),
        }
    }

    fn cap_expiry(&self, expiry: u32) -> u32 {
        let max = self.broker.settings.max_session_expiry;
        if max > 0 { expiry.min(max) } else { expiry }
    }

    async fn on_publish(
        &mut self,
        client: &mut Client,
        mut publish: Box<Publish>,
    ) -> Option<Close> {
        Metrics::add(&self.broker.metrics.publish_received, 1);
        if let Some(rate) = &mut self.rate {
            rate.charge(publish.topic.len() + publish.payload.len());
        }
        let v5 = self.version.is_v5();

        // Topic alias (MQTT 5, spec 3.3.2.3.4).
        if let Some(alias) = publish.properties.topic_alias.take() {
            let max = self.broker.settings.topic_alias_maximum;
            if alias == 0 || alias > max {
                return violation(
                    ReasonCode::TopicAliasInvalid,
                    format!("[MQTT-3.3.2-9] topic alias {alias} outside 1..={max}"),
                );
            }
            if publish.topic.is_empty() {
                match client.aliases.as_ref().and_then(|a| a.inbound.get(&alias)) {
                    Some(topic) => publish.topic = topic.clone(),
                    None => {
                        return violation(
                            ReasonCode::ProtocolError,
                            format!("spec 3.3.2.3.4: topic alias {alias} was never set"),
                        );
                    }
                }
            } else {
                client
                    .aliases
                    .get_or_insert_default()
                    .inbound
                    .insert(alias, publish.topic.clone());
            }
        }
        if publish.topic.is_empty() {
            return violation(
                ReasonCode::ProtocolError,
                "[MQTT-3.3.2-1] empty topic name without a topic alias",
            );
        }
        // Wildcards and U+0000 were refused by the decoder ([MQTT-3.3.2-2]),
        // and an alias only ever maps to a topic that passed it.
        if topic::level_count(&publish.topic) > self.broker.settings.max_topic_levels {
            return violation(
                ReasonCode::TopicNameInvalid,
                format!(
                    "topic deeper than max_topic_levels ({})",
                    self.broker.settings.max_topic_levels
                ),
            );
        }
        if publish.retain && !self.broker.settings.retain_available {
            return violation(
                ReasonCode::RetainNotSupported,
                "[MQTT-3.3.1-8] retain is not available on this server",
            );
        }
        let packet_id = publish.packet_id.unwrap_or(0);

        // Exactly once: a PUBLISH repeated before PUBREL is not routed again.
        if publish.qos == QoS::ExactlyOnce {
            let state = client.session.state.lock();
            if state.incoming_qos2.contains(&packet_id) {
                drop(state);
                self.send(&Packet::PubRec(PubAck::new(packet_id)));
                return None;
            }
            if state.incoming_qos2.len() >= usize::from(self.broker.settings.receive_maximum) {
                return violation(
                    ReasonCode::ReceiveMaximumExceeded,
                    format!(
                        "[MQTT-3.3.4-9] more than {} unacknowledged QoS 2 PUBLISHes",
                        self.broker.settings.receive_maximum
                    ),
                );
            }
        }

        let qos = publish.qos;
        let routed = match self.publish_reason(client, publish).await {
            Ok(routed) => routed,
            Err(close) => return Some(close),
        };
        match qos {
            QoS::AtMostOnce | QoS::AtLeastOnce => {
                self.pipeline_publish(Pipelined::new(routed, qos, packet_id))
                    .await
            }
            QoS::ExactlyOnce => {
                // Not pipelined: its PUBREC also waits on the incoming
                // QoS 2 record below, and it is rare on this path.
                let reason = match self.settle(routed).await {
                    Ok(reason) => reason,
                    Err(close) => return Some(close),
                };
                let ack_reason = if v5 { reason } else { ReasonCode::Success };
                if !reason.is_error() {
                    client.session.state.lock().incoming_qos2.insert(packet_id);
                    if client.session.is_stored() {
                        // Stored before PUBREC, so a resend after a restart
                        // is recognised and not delivered twice.
                        self.store_incoming_qos2(client, packet_id, true).await;
                    }
                }
                self.send_ack(Packet::PubRec, packet_id, ack_reason);
                None
            }
        }
    }

    async fn store_incoming_qos2(&self, client: &Client, packet_id: u16, pending: bool) {
        if let Err(e) = self
            .broker
            .services
            .messages
            .set_incoming_qos2(&client.session.key, packet_id, pending)
            .await
        {
            tracing::warn!(packet_id, error = %e, "could not record incoming QoS 2 state in the store");
        }
    }

    /// Check one PUBLISH and route it: refused with a reason code, or
    /// routed with its store writes still to wait for.
    async fn publish_reason(
        &mut self,
        client: &mut Client,
        publish: Box<Publish>,
    ) -> Result<Routed, Close> {
        if publish.properties.payload_format_indicator == Some(1)
            && std::str::from_utf8(&publish.payload).is_err()
        {
            if publish.qos == QoS::AtMostOnce && self.version.is_v5() {
                return Err(Close::Server(
                    ReasonCode::PayloadFormatInvalid,
                    "spec 3.3.2.3.2: payload is not UTF-8 although the format indicator says so"
                        .to_owned(),
                ));
            }
            return Ok(Routed::Refused(ReasonCode::PayloadFormatInvalid));
        }
        // `$SYS` is the broker's own: a client's PUBLISH there would pass
        // for broker statistics at every monitoring subscriber.
        if publish.topic == "$SYS" || publish.topic.starts_with("$SYS/") {
            tracing::debug!(topic = %publish.topic, "PUBLISH to $SYS refused");
            return Ok(Routed::Refused(ReasonCode::NotAuthorized));
        }
        let mut publish = publish;
        let mut mountpoint = None;
        match self.may_publish(client, &publish).await {
            PublishDecision::Allow(None) => {}
            PublishDecision::Allow(Some(modifiers)) => {
                if let Err(why) = apply_modifiers(&mut publish, &mut mountpoint, modifiers) {
                    tracing::warn!(topic = %publish.topic, why, "backend returned an unusable PUBLISH modifier");
                    return Ok(Routed::Refused(ReasonCode::ImplementationSpecificError));
                }
            }
            PublishDecision::Deny | PublishDecision::Next => {
                tracing::debug!(topic = %publish.topic, "PUBLISH not authorized");
                return Ok(Routed::Refused(ReasonCode::NotAuthorized));
            }
        }
        // The decoded packet is moved, not copied: payload and topic are
        // shared from here on by every queue the message reaches.
        let message = Arc::new(Message::new(
            publish.topic,
            publish.payload,
            publish.qos,
            publish.retain,
            publish.properties,
            client.session.id,
        ));
        let mountpoint = mountpoint.as_deref().unwrap_or(&client.info.mountpoint);
        Ok(Routed::Routing(self.broker.route(mountpoint, message)))
    }

    /// Fetch stale ACL answers again (see `authz`) before a PUBLISH or
    /// SUBSCRIBE is checked.
    async fn refresh_acl(&mut self, client: &mut Client) -> Option<Close> {
        if !super::authz::stale(&self.broker, client) {
            return None;
        }
        // Boxed: rare, and inline it would grow every connection's task.
        Box::pin(super::authz::refresh(&self.broker, client)).await
    }

    /// The ACL's answer for a PUBLISH, kept per topic for the connection
    /// when it depends only on the topic, QoS and retain flag (static rules,
    /// own rules without payload limits, the chain's authorizers), so a
    /// client publishing to the same topics asks once.
    async fn may_publish(&mut self, client: &mut Client, publish: &Publish) -> PublishDecision {
        // Backends may answer differently per QoS and retain flag: one answer each.
        let slot = publish.qos as usize * 2 + usize::from(publish.retain);
        if let Some(answer) = client
            .publish_acl
            .as_ref()
            .and_then(|acl| acl.get(&publish.topic))
            .and_then(|a| a[slot].as_ref())
        {
            return answer.clone();
        }
        let request = PublishRequest {
            topic: &publish.topic,
            qos: publish.qos,
            retain: publish.retain,
            payload_len: publish.payload.len(),
        };
        match self
            .broker
            .acl
            .check_publish(
                &self.broker.services.chain,
                client.acl.as_deref(),
                &client.info,
                &request,
            )
            .await
        {
            Ok((decision, Source::Nobody | Source::PerMessage)) => decision,
            Ok((decision, Source::PerTopic)) => {
                let known = client.publish_acl.get_or_insert_default();
                let answers = match known.get_mut(&publish.topic) {
                    Some(answers) => answers,
                    None => {
                        // Bounded so a client cycling through topics cannot grow it forever.
                        if known.len() >= 1024 {
                            known.clear();
                        }
                        known.entry(publish.topic.clone()).or_default()
                    }
                };
                answers[slot] = Some(decision.clone());
                decision
            }
            Err(e) => {
                tracing::warn!(error = %e, "ACL backend failed; denying");
                PublishDecision::Deny
            }
        }
    }

    pub(super) fn send_ack(
        &mut self,
        kind: fn(PubAck) -> Packet,
        packet_id: u16,
        reason: ReasonCode,
    ) {
        let ack = PubAck {
            packet_id,
            reason,
            properties: AckProperties::default(),
        };
        self.send(&kind(ack));
    }

    async fn on_subscribe(
        &mut self,
        client: &mut Client,
        subscribe: Box<Subscribe>,
    ) -> Option<Close> {
        let identifier = subscribe
            .properties
            .subscription_identifiers
            .first()
            .copied();
        let mut reasons = Vec::with_capacity(subscribe.filters.len());
        let mut retained: Vec<Delivery> = Vec::new();
        for entry in &subscribe.filters {
            let parsed = match parse_filter(&entry.filter) {
                Ok(parsed) => parsed,
                Err(rule) => {
                    tracing::debug!(filter = %entry.filter, rule, "invalid shared subscription");
                    reasons.push(ReasonCode::TopicFilterInvalid);
                    continue;
                }
            };
            if topic::validate_topic_filter(parsed.filter).is_err()
                || topic::level_count(parsed.filter) > self.broker.settings.max_topic_levels
            {
                reasons.push(ReasonCode::TopicFilterInvalid);
                continue;
            }
            if parsed.group.is_some() && entry.options.no_local {
                return violation(
                    ReasonCode::ProtocolError,
                    "[MQTT-3.8.3-4] No Local on a shared subscription",
                );
            }
            // The filter without `$share/{group}/` or `$queue/`, so a shared
            // subscription cannot slip past rules written for the filter.
            let request = SubscribeRequest {
                filter: parsed.filter,
                qos: entry.options.qos,
            };
            let decision = match self
                .broker
                .acl
                .check_subscribe(
                    &self.broker.services.chain,
                    client.acl.as_deref(),
                    &client.info,
                    &request,
                )
                .await
            {
                Ok(decision) => decision,
                Err(e) => {
                    tracing::warn!(error = %e, "ACL backend failed; refusing subscription");
                    reasons.push(ReasonCode::ImplementationSpecificError);
                    continue;
                }
            };
            let reason = match decision {
                SubscribeDecision::Allow {
                    max_qos,
                    replace: None,
                } => {
                    let mut options = entry.options;
                    // A subscription is granted at most the ACL's QoS.
                    options.qos = options.qos.min(max_qos);
                    self.install_subscription(
                        client,
                        &entry.filter,
                        &parsed,
                        options,
                        identifier,
                        &mut retained,
                    );
                    ReasonCode::granted(options.qos)
                }
                SubscribeDecision::Allow {
                    replace: Some(rewrites),
                    ..
                } => self.install_rewrites(
                    client,
                    entry.options,
                    &rewrites,
                    identifier,
                    &mut retained,
                ),
                SubscribeDecision::Deny | SubscribeDecision::Next => ReasonCode::NotAuthorized,
            };
            reasons.push(reason);
        }
        self.send(&Packet::SubAck(Box::new(SubAck {
            packet_id: subscribe.packet_id,
            reasons,
            properties: Properties::default(),
        })));
        // After the SUBACK, so it reaches the client first.
        for delivery in retained {
            client.session.enqueue(delivery, &self.broker.overload);
        }
        if client.session_expiry > 0 {
            crate::lifecycle::persist(&self.broker, &client.session).await;
        }
        None
    }

    /// Add one subscription and collect the retained messages it gets.
    fn install_subscription(
        &self,
        client: &Client,
        raw_filter: &str,
        parsed: &ParsedFilter<'_>,
        options: SubscriptionOptions,
        identifier: Option<u32>,
        retained: &mut Vec<Delivery>,
    ) {
        let existed =
            self.broker
                .add_subscription(&client.session, raw_filter, parsed, options, identifier);
        // Retained messages are not sent to shared subscriptions.
        let send_retained = parsed.group.is_none()
            && match options.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendIfNew => !existed,
                RetainHandling::DoNotSend => false,
            };
        if send_retained {
            for message in self
                .broker
                .retained
                .matches(&client.info.mountpoint, parsed.filter)
            {
                retained.push(Delivery {
                    qos: message.qos.min(options.qos),
                    message,
                    retain: true,
                    subscription_ids: identifier.into_iter().collect(),
                    shared: None,
                    // Still retained if lost in a crash: not queued in the store.
                    stored: None,
                    charge: None,
                });
            }
        }
    }

    /// The subscriptions an authorizer put in place of the requested one
    /// (VerneMQ's subscribe modifiers); the SUBACK reports the first one's QoS.
    fn install_rewrites(
        &self,
        client: &Client,
        requested: SubscriptionOptions,
        rewrites: &[SubscriptionRewrite],
        identifier: Option<u32>,
        retained: &mut Vec<Delivery>,
    ) -> ReasonCode {
        let mut granted = None;
        for rewrite in rewrites {
            let parsed = match parse_filter(&rewrite.filter) {
                Ok(parsed) if topic::validate_topic_filter(parsed.filter).is_ok() => parsed,
                _ => {
                    tracing::warn!(filter = %rewrite.filter, "backend returned an invalid subscription modifier");
                    continue;
                }
            };
            let options = SubscriptionOptions {
                qos: rewrite.qos,
                ..requested
            };
            self.install_subscription(
                client,
                &rewrite.filter,
                &parsed,
                options,
                identifier,
                retained,
            );
            granted.get_or_insert(rewrite.qos);
        }
        granted.map_or(ReasonCode::NotAuthorized, ReasonCode::granted)
    }

    async fn on_unsubscribe(&mut self, client: &mut Client, unsubscribe: Box<Unsubscribe>) {
        let mut reasons = Vec::with_capacity(unsubscribe.filters.len());
        for raw in &unsubscribe.filters {
            let parsed = match parse_filter(raw) {
                Ok(parsed) if topic::validate_topic_filter(parsed.filter).is_ok() => parsed,
                _ => {
                    reasons.push(ReasonCode::TopicFilterInvalid);
                    continue;
                }
            };
            let removed =
                self.broker
                    .topics
                    .unsubscribe(&client.info.mountpoint, &parsed, client.session.id);
            client
                .session
                .state
                .lock()
                .subscriptions
                .remove(raw.as_str());
            reasons.push(if removed {
                ReasonCode::Success
            } else {
                ReasonCode::NoSubscriptionExisted
            });
        }
        self.send(&Packet::UnsubAck(Box::new(UnsubAck {
            packet_id: unsubscribe.packet_id,
            reasons,
            properties: Properties::default(),
        })));
        if client.session_expiry > 0 {
            crate::lifecycle::persist(&self.broker, &client.session).await;
        }
    }

    /// AUTH after CONNECT: re-authentication (spec 4.12.1), one round per packet.
    async fn on_auth(&mut self, client: &mut Client, auth: Box<Auth>) -> Option<Close> {
        let Some(method) = client.auth_method.clone() else {
            return violation(
                ReasonCode::ProtocolError,
                "[MQTT-4.12.0-7] AUTH without an authentication method in CONNECT",
            );
        };
        if auth.properties.authentication_method.as_deref() != Some(method.as_str()) {
            return violation(
                ReasonCode::ProtocolError,
                "[MQTT-4.12.1-1] re-authentication must use the CONNECT's method",
            );
        }
        let mut context = match (auth.reason, client.reauth.take().map(|b| *b)) {
            (ReasonCode::ReAuthenticate, None) => EnhancedAuthContext {
                client_id: client.info.client_id.clone(),
                username: client.info.username.clone(),
                mountpoint: client.info.mountpoint.clone(),
                method: method.clone(),
                round: 0,
                reauthenticate: true,
                state: None,
            },
            (ReasonCode::ContinueAuthentication, Some(mut context)) => {
                context.round += 1;
                context
            }
            (reason, _) => {
                return violation(
                    ReasonCode::ProtocolError,
                    format!("spec 4.12.1: unexpected AUTH {reason} in this state"),
                );
            }
        };
        let Some(backend) = self.broker.enhanced_for(&method) else {
            return violation(
                ReasonCode::BadAuthenticationMethod,
                format!("authentication method `{method}` is no longer served"),
            );
        };
        let step = match backend
            .auth_step(&context, auth.properties.authentication_data)
            .await
        {
            Ok(step) => step,
            Err(e) => {
                tracing::warn!(error = %e, "re-authentication backend failed");
                return violation(
                    ReasonCode::ImplementationSpecificError,
                    "authentication backend unavailable",
                );
            }
        };
        let (reason, data) = match step {
            AuthStep::Success { data } => (ReasonCode::Success, data),
            AuthStep::Continue { data, state } => {
                context.state = state;
                client.reauth = Some(Box::new(context));
                (ReasonCode::ContinueAuthentication, data)
            }
            AuthStep::Failure => {
                return violation(ReasonCode::NotAuthorized, "re-authentication failed");
            }
        };
        self.send(&Packet::Auth(Box::new(Auth {
            reason,
            properties: Properties {
                authentication_method: Some(method),
                authentication_data: data,
                ..Properties::default()
            },
        })));
        None
    }
}
