//! Handing an ending session's shared-subscription messages to the other
//! members of its groups, so a member going away does not take the group's
//! QoS 1/2 messages with it: those in memory, and the part of a long backlog
//! that still waits in the store.

use std::collections::HashSet;
use std::sync::Arc;

use fogg_codec::QoS;
use fogg_codec::topic::matches;

use crate::message::{Delivery, SharedOrigin};
use crate::metrics::Metrics;
use crate::session::{RESIDENT, Session};
use crate::state::BrokerState;
use crate::topics::{ParsedFilter, parse_filter};

/// The subscriptions of a session, to tell which of its messages came
/// through a shared group. Messages read back from the store do not record
/// how they were routed, so it is inferred from the topic: one that matches
/// a shared filter of the session and none of its plain filters.
pub(crate) struct SessionFilters {
    shared: Vec<SharedOrigin>,
    plain: Vec<String>,
}

impl SessionFilters {
    pub fn of(session: &Session) -> SessionFilters {
        let state = session.state.lock();
        let mut filters = SessionFilters {
            shared: Vec::new(),
            plain: Vec::new(),
        };
        for raw in state.subscriptions.keys() {
            if let Ok(ParsedFilter {
                group: Some(group),
                filter,
            }) = parse_filter(raw)
            {
                filters.shared.push(SharedOrigin {
                    group: Arc::from(group),
                    filter: Arc::from(filter),
                });
            }
        }
        // The plain filters only matter to tell groups' messages apart; a
        // session without shared subscriptions (nearly all) copies nothing.
        if filters.has_shared() {
            filters.plain = state
                .subscriptions
                .keys()
                .filter(|raw| parse_filter(raw).is_ok_and(|p| p.group.is_none()))
                .cloned()
                .collect();
        }
        filters
    }

    fn has_shared(&self) -> bool {
        !self.shared.is_empty()
    }

    fn origin_of(&self, topic: &str) -> Option<SharedOrigin> {
        if self.plain.iter().any(|f| matches(f, topic)) {
            return None;
        }
        self.shared
            .iter()
            .find(|origin| matches(&origin.filter, topic))
            .cloned()
    }
}

/// What an ending session still held: its in-memory deliveries, and where
/// its on-disk backlog starts (if it has one).
pub(crate) struct Leftovers {
    pub in_memory: Vec<Delivery>,
    /// Spilled messages have store numbers above this one.
    pub backlog_after: Option<u64>,
    /// Store numbers of in-memory deliveries above `backlog_after` (queued
    /// by a publisher that raced a spill), so they are not handed over twice.
    pub resident_above: HashSet<u64>,
}

impl BrokerState {
    /// Hand the shared-group messages of an ending session to other members.
    /// Called before the session's store entry is deleted, so its on-disk
    /// backlog can still be read.
    pub(crate) async fn hand_over(
        &self,
        ending: &Session,
        filters: &SessionFilters,
        leftovers: Leftovers,
    ) {
        if !filters.has_shared() {
            return;
        }
        self.reroute_shared(ending, filters, leftovers.in_memory)
            .await;
        let Some(mut after) = leftovers.backlog_after else {
            return;
        };
        if !ending.is_stored() {
            return;
        }
        // Page through the backlog so memory stays bounded however long it is.
        loop {
            let page = match self
                .services
                .messages
                .read_queue(&ending.key, after, RESIDENT)
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(client_id = %ending.key.client_id, error = %e, "could not read the stored backlog of an ending shared-subscription member; it is lost");
                    return;
                }
            };
            let Some(&(last, _)) = page.last() else {
                return;
            };
            let full = page.len() >= RESIDENT;
            after = last;
            let deliveries = page
                .into_iter()
                .filter(|(seq, _)| !leftovers.resident_above.contains(seq))
                .map(|(seq, stored)| {
                    let mut delivery = Delivery::from_stored(seq, stored);
                    delivery.stored = None;
                    delivery
                })
                .collect();
            self.reroute_shared(ending, filters, deliveries).await;
            if !full {
                return;
            }
        }
    }

    /// Give each shared-group delivery to another member of its group (the
    /// online ones in turn, else any); QoS 0 and deliveries of plain subscriptions go
    /// with the session.
    async fn reroute_shared(
        &self,
        ending: &Session,
        filters: &SessionFilters,
        deliveries: Vec<Delivery>,
    ) {
        let mut planned = Vec::new();
        let mut next = 0usize;
        for mut delivery in deliveries {
            if delivery.qos == QoS::AtMostOnce {
                continue;
            }
            let Some(origin) = delivery
                .shared
                .clone()
                .or_else(|| filters.origin_of(&delivery.message.topic))
            else {
                continue;
            };
            let members =
                self.topics
                    .shared_members(&ending.key.mountpoint, &origin.group, &origin.filter);
            let others: Vec<_> = members
                .iter()
                .filter(|m| m.session.id != ending.id)
                .collect();
            let online: Vec<_> = others.iter().filter(|m| m.session.is_online()).collect();
            // Spread over the online members (else over all), so one member's
            // queue limit does not decide what the group loses.
            let candidate = if online.is_empty() {
                others.get(next % others.len().max(1)).copied()
            } else {
                online.get(next % online.len()).copied().copied()
            };
            next += 1;
            if let Some(member) = candidate {
                delivery.qos = delivery.qos.min(member.options.qos);
                delivery.subscription_ids = member.identifier.into_iter().collect();
                delivery.shared = Some(origin);
                delivery.stored = None;
                planned.push((member.session.clone(), delivery));
            } else {
                Metrics::add(&self.metrics.publish_dropped, 1);
            }
        }
        if planned.is_empty() {
            return;
        }
        if let Err(e) = self.deliver(planned).await {
            tracing::warn!(client_id = %ending.key.client_id, error = %e, "could not store shared-subscription messages handed to another member");
        }
    }
}
