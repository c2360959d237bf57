"""persistent.py PORT PROTOCOL CLIENT_ID subscribe TOPIC
   persistent.py PORT PROTOCOL CLIENT_ID receive COUNT

A persistent session: clean_session=False (3.1, 3.1.1) or Clean Start 0 with a
Session Expiry Interval of 300 s (5.0).

`subscribe` subscribes to TOPIC at QoS 1 and disconnects normally.
`receive` reconnects, checks the broker kept the session (session present;
MQTT 3.1 has no such flag) and prints the COUNT messages that arrive."""

import sys

from common import Client, fail, show


def main():
    port, protocol, client_id, phase, arg = sys.argv[1:6]
    client = Client(protocol, client_id, clean=False, session_expiry=300)
    session_present = client.connect(int(port))
    print(f"SESSION_PRESENT|{int(session_present)}", flush=True)
    if phase == "subscribe":
        client.subscribe(arg, 1)
        print("SUBSCRIBED", flush=True)
    elif phase == "receive":
        if protocol != "v31" and not session_present:
            fail("the broker did not keep the session (session present = 0)")
        for message in client.wait_messages(int(arg)):
            show(message)
    else:
        fail(f"unknown phase {phase!r}")
    client.disconnect()
    print("OK", flush=True)


if __name__ == "__main__":
    main()
