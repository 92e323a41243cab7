"""Reads the cases the differential test wrote (JSON lines) and parses each forwarded stream
with h11, as an origin would. Prints one JSON line per case:
{"id", "verdict": "ok" | "rejected" | "mismatch", "detail", "raw": verdict on the client's
original bytes}. A mismatch is an origin that accepts what we sent and frames it otherwise
than we did: a smuggling risk."""

import json
import sys

import h11


def parse(data, stop_after):
    """Requests h11 reads from `data` ((target, body) each), the error that stopped it, and
    whether it accepted a request head at all."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    conn.receive_data(b"")
    requests = []
    current = None
    while len(requests) < stop_after:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as error:
            return requests, f"error: {error}", current is not None
        if event is h11.NEED_DATA:
            return requests, "incomplete", current is not None
        if event is h11.PAUSED:
            try:
                conn.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
                conn.send(h11.EndOfMessage())
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return requests, "closed after the first request", True
            continue
        if isinstance(event, h11.Request):
            current = [event.target.decode("latin-1"), b""]
        elif isinstance(event, h11.Data):
            current[1] += event.data
        elif isinstance(event, h11.EndOfMessage):
            requests.append((current[0], current[1]))
        elif isinstance(event, h11.ConnectionClosed):
            return requests, "closed", current is not None
    return requests, None, True


def main(path):
    for line in open(path):
        case = json.loads(line)
        # A proxy takes the target from an absolute-form URI, so a missing Host is no reason
        # to refuse; add one for h11, which as an origin would insist.
        raw_input = bytes.fromhex(case["input"])
        if b"\nhost:" not in raw_input.lower() and b"\n" in raw_input:
            line_end = raw_input.index(b"\n") + 1
            raw_input = raw_input[:line_end] + b"Host: o\r\n" + raw_input[line_end:]
        _, raw_error, saw_head = parse(raw_input, 1)
        raw = "accepted" if saw_head else f"rejected ({raw_error})"
        result = {"id": case["id"], "raw": raw}
        if case["ours"] == "reject":
            result["verdict"] = "ok"
            print(json.dumps(result))
            continue
        body = bytes.fromhex(case["body"])
        want = 2 if case["keep_alive"] else 1
        requests, error, _ = parse(bytes.fromhex(case["output"]), want)
        if not requests:
            result["verdict"] = "rejected"
            result["detail"] = error
        elif requests[0] != (case["path"], body):
            result["verdict"] = "mismatch"
            result["detail"] = f"first request {requests[0]!r}"
        elif want == 2 and (len(requests) < 2 or requests[1][0] != "/second"):
            result["verdict"] = "mismatch"
            result["detail"] = f"second request lost: {requests[1:]!r} {error}"
        else:
            result["verdict"] = "ok"
        print(json.dumps(result))


main(sys.argv[1])
