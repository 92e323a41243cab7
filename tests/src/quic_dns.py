# DNS over QUIC (RFC 9250) or over HTTP/3 in front of a real name server: no Debian package
# serves either here, so this front (on PyPI's aioquic) takes each query off QUIC and asks
# the name server over TCP, which carries the same length-prefixed messages DoQ does.
#
# Arguments: doq|doh3 CERT KEY NAME_SERVER_PORT. Prints the UDP port it serves on, then a
# line per query ("query").

import asyncio
import base64
import struct
import sys

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import StreamDataReceived

mode, cert, key, name_server_port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])


async def ask(query):
    reader, writer = await asyncio.open_connection("127.0.0.1", name_server_port)
    writer.write(struct.pack("!H", len(query)) + query)
    await writer.drain()
    (length,) = struct.unpack("!H", await reader.readexactly(2))
    answer = await reader.readexactly(length)
    writer.close()
    print("query", flush=True)
    return answer


class DnsOverQuic(QuicConnectionProtocol):
    """One query per stream: a 2-byte length and the message, then the stream's end."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.partial = {}

    def quic_event_received(self, event):
        if not isinstance(event, StreamDataReceived):
            return
        data = self.partial.pop(event.stream_id, b"") + event.data
        if not event.end_stream:
            self.partial[event.stream_id] = data
            return
        asyncio.ensure_future(self.answer(event.stream_id, data))

    async def answer(self, stream_id, data):
        (length,) = struct.unpack("!H", data[:2])
        answer = await ask(data[2 : 2 + length])
        self._quic.send_stream_data(
            stream_id, struct.pack("!H", len(answer)) + answer, end_stream=True
        )
        self.transmit()


class DnsOverHttp3(QuicConnectionProtocol):
    """RFC 8484's /dns-query on HTTP/3: POST with the message as the body, or GET ?dns=."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.http = None
        self.requests = {}

    def quic_event_received(self, event):
        if self.http is None:
            self.http = H3Connection(self._quic)
        for http_event in self.http.handle_event(event):
            if isinstance(http_event, HeadersReceived):
                self.requests[http_event.stream_id] = (dict(http_event.headers), b"")
            elif isinstance(http_event, DataReceived):
                headers, body = self.requests[http_event.stream_id]
                self.requests[http_event.stream_id] = (headers, body + http_event.data)
            else:
                continue
            if http_event.stream_ended:
                headers, body = self.requests.pop(http_event.stream_id)
                asyncio.ensure_future(self.answer(http_event.stream_id, headers, body))

    async def answer(self, stream_id, headers, body):
        if headers.get(b":method") == b"GET":
            encoded = headers[b":path"].split(b"dns=", 1)[1].split(b"&")[0]
            body = base64.urlsafe_b64decode(encoded + b"=" * (-len(encoded) % 4))
        answer = await ask(body)
        self.http.send_headers(
            stream_id,
            [
                (b":status", b"200"),
                (b"content-type", b"application/dns-message"),
                (b"content-length", str(len(answer)).encode()),
            ],
        )
        self.http.send_data(stream_id, answer, end_stream=True)
        self.transmit()


async def main():
    configuration = QuicConfiguration(
        is_client=False, alpn_protocols=["doq"] if mode == "doq" else H3_ALPN
    )
    configuration.load_cert_chain(cert, key)
    protocol = DnsOverQuic if mode == "doq" else DnsOverHttp3
    server = await serve(
        "127.0.0.1", 0, configuration=configuration, create_protocol=protocol
    )
    print(server._transport.get_extra_info("sockname")[1], flush=True)
    await asyncio.Future()


asyncio.run(main())
