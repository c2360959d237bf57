"""roundtrip.py PORT PROTOCOL: connect, subscribe at QoS 2, publish at QoS 0, 1
and 2 and receive each message back with the QoS it was published at.

PROTOCOL is v31, v311 or v5 (MQTT 3.1 is what paho is our client for)."""

import sys

from common import Client, fail, show


def main():
    port, protocol = int(sys.argv[1]), sys.argv[2]
    client = Client(protocol, f"paho-roundtrip-{protocol}")
    session_present = client.connect(port)
    if session_present:
        fail("session present on a clean connection")
    print("CONNECTED", flush=True)
    client.subscribe("paho/rt/#", 2)
    for qos in (0, 1, 2):
        client.publish(f"paho/rt/{qos}", f"{protocol} qos {qos}", qos)
    messages = client.wait_messages(3)
    for message in messages:
        show(message)
    got = sorted((m.topic, m.qos, m.payload.decode()) for m in messages)
    want = [(f"paho/rt/{q}", q, f"{protocol} qos {q}") for q in (0, 1, 2)]
    if got != want:
        fail(f"received {got}, expected {want}")
    client.disconnect()
    print("OK", flush=True)


if __name__ == "__main__":
    main()
