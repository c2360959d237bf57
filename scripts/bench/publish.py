#!/usr/bin/env python3
"""Publish COUNT QoS 1 messages of 64 bytes (the line number, zero-padded) to
TOPIC and wait until the broker acknowledged every one.

    publish.py PORT TOPIC COUNT

mosquitto_pub -l is no use for long inputs: at end of input it disconnects
with most of the input still unsent (measured: ~19 000 of 150 000 sent)."""
import collections
import sys

import paho.mqtt.client as mqtt

port, topic, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="loader", clean_session=True)
client.max_inflight_messages_set(200)
client.connect("127.0.0.1", port)
client.loop_start()
window = collections.deque()
for i in range(1, count + 1):
    while True:
        info = client.publish(topic, b"%063d" % i, qos=1)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            break
        window.popleft().wait_for_publish(timeout=60)
    window.append(info)
    if len(window) >= 1000:
        window.popleft().wait_for_publish(timeout=60)
for info in window:
    info.wait_for_publish(timeout=60)
    if not info.is_published():
        sys.exit("a message was not acknowledged within 60 s")
client.disconnect()
client.loop_stop()
print(f"published and acknowledged {count}")
