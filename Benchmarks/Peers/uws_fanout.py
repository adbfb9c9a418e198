"""The uWebSockets peer of `mktctl bench edge`: the same fan-out as edged, done by uWebSockets (through socketify),
one process, one thread. Clients connect to /prices and send edged's subscribe message; the bench's publisher
connects to /publish and sends each update as "SYMBOL\\n" + its JSON (the bytes edged would send), which uWebSockets'
own pub/sub writes to every subscriber of SYMBOL. Usage: uws_fanout.py PORT"""
import json
import sys

from socketify import App, AppListenOptions, OpCode


def main(port):
    app = App()

    def subscriber_message(ws, message, opcode):
        request = json.loads(message)
        symbols = request.get("symbols") or [request.get("symbol")]
        for symbol in symbols:
            ws.subscribe(symbol)
        ws.send(json.dumps({"type": "subscribed", "symbols": symbols}, separators=(",", ":")), OpCode.TEXT)

    def publisher_message(ws, message, opcode):
        topic, _, update = message.partition("\n")
        app.publish(topic, update, OpCode.TEXT)

    # Backpressure as edged's clients have it (64 KiB above the kernel), no compression, no idle timeout in a run.
    behavior = {"compression": 0, "max_payload_length": 16 * 1024, "idle_timeout": 0, "max_backpressure": 1 << 20}
    app.ws("/prices", dict(behavior, message=subscriber_message))
    app.ws("/publish", dict(behavior, message=publisher_message))
    # On loopback only, like edged in the bench. A port it cannot take makes socketify print "Failed to listen" (and
    # run on without a listener): the bench sees that and tries another port.
    app.listen(AppListenOptions(port=port, host="127.0.0.1"),
               lambda config: print("listening on port %d" % port, flush=True))
    app.run()


if __name__ == "__main__":
    main(int(sys.argv[1]))
