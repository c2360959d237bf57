"""Shared helpers for the paho-mqtt (2.x) scripts run by core/server/tests/clients.rs.

Every script takes the broker port first, prints what it saw on stdout, and
exits non-zero with a reason on stderr when something is not as expected.
Every wait is bounded, so a script never hangs a test run.
"""

import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

WAIT = 10.0
PROTOCOLS = {"v31": mqtt.MQTTv31, "v311": mqtt.MQTTv311, "v5": mqtt.MQTTv5}


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def wait_for(what, predicate, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


class Client:
    """A paho client plus the events its callbacks recorded."""

    def __init__(self, protocol, client_id, clean=True, will=None, session_expiry=None):
        if protocol not in PROTOCOLS:
            fail(f"unknown protocol {protocol!r}; use one of {sorted(PROTOCOLS)}")
        self.protocol = protocol
        self.v5 = protocol == "v5"
        self.clean = clean
        self.session_expiry = session_expiry
        kwargs = {}
        if not self.v5:
            kwargs["clean_session"] = clean
        self.mqtt = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=PROTOCOLS[protocol],
            **kwargs,
        )
        if will is not None:
            topic, payload, qos = will
            self.mqtt.will_set(topic, payload, qos=qos)
        self.lock = threading.Lock()
        self.connack = None
        self.subacks = {}
        self.messages = []
        self.published = set()
        self.disconnected = None
        self.mqtt.on_connect = self._on_connect
        self.mqtt.on_subscribe = self._on_subscribe
        self.mqtt.on_message = self._on_message
        self.mqtt.on_publish = self._on_publish
        self.mqtt.on_disconnect = self._on_disconnect

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        with self.lock:
            self.connack = (flags.session_present, reason_code)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self.lock:
            self.subacks[mid] = list(reason_codes)

    def _on_message(self, client, userdata, message):
        with self.lock:
            self.messages.append(message)

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        with self.lock:
            self.published.add(mid)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self.lock:
            self.disconnected = reason_code

    def connect(self, port):
        """Connect, run the network loop in a thread, wait for a successful CONNACK;
        returns the session present flag."""
        kwargs = {}
        if self.v5:
            kwargs["clean_start"] = self.clean
            if self.session_expiry is not None:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = self.session_expiry
                kwargs["properties"] = props
        self.mqtt.connect("127.0.0.1", port, keepalive=60, **kwargs)
        self.mqtt.loop_start()
        wait_for("CONNACK", lambda: self.connack is not None)
        session_present, reason = self.connack
        if reason.is_failure:
            fail(f"connection refused: {reason} ({reason.value:#x})")
        return session_present

    def subscribe(self, topic, qos):
        """Subscribe and wait for the SUBACK; fails unless `qos` is granted."""
        result, mid = self.mqtt.subscribe(topic, qos)
        if result != mqtt.MQTT_ERR_SUCCESS:
            fail(f"subscribe {topic}: {mqtt.error_string(result)}")
        wait_for(f"SUBACK for {topic}", lambda: mid in self.subacks)
        granted = [rc.value for rc in self.subacks[mid]]
        if granted != [qos]:
            fail(f"subscribe {topic} at QoS {qos}: SUBACK {granted}")

    def publish(self, topic, payload, qos, retain=False):
        """Publish and wait until the QoS flow completes (PUBACK / PUBCOMP)."""
        info = self.mqtt.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            fail(f"publish {topic}: {mqtt.error_string(info.rc)}")
        info.wait_for_publish(timeout=WAIT)
        if not info.is_published():
            fail(f"publish {topic} at QoS {qos} not acknowledged within {WAIT}s")

    def wait_messages(self, count):
        wait_for(f"{count} message(s)", lambda: len(self.messages) >= count)
        with self.lock:
            return list(self.messages)

    def disconnect(self):
        self.mqtt.disconnect()
        wait_for("the disconnect", lambda: self.disconnected is not None)
        self.mqtt.loop_stop()


def show(message):
    """One line per message: MSG|topic|qos|retain|payload."""
    payload = message.payload.decode("utf-8", "replace")
    print(f"MSG|{message.topic}|{message.qos}|{int(message.retain)}|{payload}", flush=True)
