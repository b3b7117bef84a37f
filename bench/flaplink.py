#!/usr/bin/python3
"""One emulated link for the bench scripts (the kernel here has no netem): a TCP
relay on 127.0.0.1:PORT to 127.0.0.1:UPSTREAM whose client->server bytes share one
rate cap (a token bucket for all connections; RATE 0: none), and which goes down for
DOWN seconds after every UP seconds (DOWN 0: never): every open connection is cut,
new ones are refused until it is back (the schedule starts when the relay does).
Replaces STATS every 0.1 s with a JSON object: request bytes forwarded upstream,
outages so far. bench/flaky.py uses the outages; bench/compare.py only the count.

usage: flaplink.py PORT UPSTREAM RATE_BYTES_PER_S UP_S DOWN_S STATS
"""
import asyncio
import json
import os
import sys
import time

PORT, UPSTREAM, RATE = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
UP, DOWN, STATS = float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
state = {"forwarded": 0, "outages": 0, "up": True}
conns = set()
clock = [time.monotonic()]  # the shared link's virtual clock (token bucket)


async def pace(n):
    if RATE <= 0:
        return
    now = time.monotonic()
    start = max(clock[0], now)
    clock[0] = start + n / RATE
    if clock[0] > now:
        await asyncio.sleep(clock[0] - now)


async def pipe(r, w, upstream):
    try:
        while state["up"]:
            data = await r.read(1 << 14)
            if not data:
                break
            if upstream:
                await pace(len(data))
                if not state["up"]:
                    break
                state["forwarded"] += len(data)
            w.write(data)
            await w.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            w.close()
        except Exception:
            pass


async def handle(cr, cw):
    if not state["up"]:
        cw.close()
        return
    try:
        sr, sw = await asyncio.open_connection("127.0.0.1", UPSTREAM)
    except OSError:
        cw.close()
        return
    tasks = {asyncio.ensure_future(pipe(cr, sw, True)), asyncio.ensure_future(pipe(sr, cw, False))}
    conns.add((cw, sw))
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for t in tasks:
        t.cancel()
    for w in (cw, sw):
        w.close()
    conns.discard((cw, sw))


async def schedule():
    while DOWN > 0:
        await asyncio.sleep(UP)
        state["up"], state["outages"] = False, state["outages"] + 1
        for cw, sw in list(conns):  # a real link loss resets every open connection
            for w in (cw, sw):
                try:
                    w.transport.abort()
                except Exception:
                    pass
        await asyncio.sleep(DOWN)
        state["up"] = True
        clock[0] = time.monotonic()


async def report():
    while True:
        await asyncio.sleep(0.1)
        with open(STATS + ".tmp", "w") as f:
            f.write(json.dumps(state))
        os.replace(STATS + ".tmp", STATS)


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", PORT)
    await asyncio.gather(server.serve_forever(), schedule(), report())


asyncio.run(main())
