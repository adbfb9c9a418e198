"""An outside WebSocket client for the tests: subscribes and prints every text message it gets, raw, one per line,
until the time is up. Usage: ws_client.py [--cafile PEM] URL SECONDS SYMBOL [SYMBOL...]
With a wss URL, --cafile names the certificate to trust (a test's own self-signed one); the host name or address in
the URL is verified against it as a browser would."""
import asyncio
import json
import ssl
import sys

import websockets


async def main(url, seconds, symbols, cafile):
    tls = ssl.create_default_context(cafile=cafile) if url.startswith("wss:") else None
    async with websockets.connect(url, ssl=tls) as socket:
        await socket.send(json.dumps({"action": "subscribe", "symbols": symbols}))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            try:
                message = await asyncio.wait_for(socket.recv(), timeout=left)
            except asyncio.TimeoutError:
                break
            print(message, flush=True)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    cafile = None
    if arguments and arguments[0] == "--cafile":
        cafile, arguments = arguments[1], arguments[2:]
    asyncio.run(main(arguments[0], float(arguments[1]), arguments[2:], cafile))
