"""An outside WebSocket client for the end-to-end tests: subscribes and prints every text message it gets, raw,
one per line, until the time is up. Usage: ws_client.py URL SECONDS SYMBOL [SYMBOL...]"""
import asyncio
import json
import sys

import websockets


async def main(url, seconds, symbols):
    async with websockets.connect(url) as socket:
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
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), sys.argv[3:]))
