#!/usr/bin/python3
"""A TCP relay that counts the bytes clients send (for the kill-and-rerun experiment
of bench/compare.py): listens on 127.0.0.1:PORT, forwards to 127.0.0.1:UPSTREAM,
and keeps the running total of client->server bytes in FILE.

usage: countproxy.py PORT UPSTREAM FILE
"""
import asyncio
import os
import sys

PORT, UPSTREAM, OUT = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
total = 0


async def pipe(r, w, count):
    global total
    try:
        while True:
            data = await r.read(1 << 16)
            if not data:
                break
            if count:
                total += len(data)
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
    try:
        sr, sw = await asyncio.open_connection("127.0.0.1", UPSTREAM)
    except OSError:
        cw.close()
        return
    await asyncio.gather(pipe(cr, sw, True), pipe(sr, cw, False))


async def report():
    while True:
        with open(OUT + ".tmp", "w") as f:
            f.write(str(total))
        os.replace(OUT + ".tmp", OUT)
        await asyncio.sleep(0.1)


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", PORT)
    asyncio.create_task(report())
    async with server:
        await server.serve_forever()


asyncio.run(main())
