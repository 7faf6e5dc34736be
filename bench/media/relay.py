"""Packets per second through the media engine's relay (bridged endpoint pairs, optionally transcoding).

Usage: .venv/bin/python bench/media/relay.py [--pairs 20] [--seconds 5] [--rate 20000] [--transcode] [--no-uvloop]

The engine runs in this process on its event loop; a load generator in a child process (the other core) sends
172-byte G.711 RTP packets at ``--rate`` packets/s spread over the pairs' A sides and counts what arrives at the
B sides. Reported: relayed packets per wall-second, per engine CPU-second (the figure that says how many calls
fit: a G.711 call is 50 packets/s per direction per leg), loss, and the worst event-loop lag seen meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import struct
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from hipper.media.engine import Connect, CreateEndpoint, EndpointCreated, MediaEngine, StartSending
from hipper.media.sdp import build_offer


def generator(conn: Connection, pairs: int, seconds: float, rate: int, codecs: tuple[str, str]) -> None:
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(pairs)]
    receivers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(pairs)]
    for sock in senders + receivers:
        sock.bind(("127.0.0.1", 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    for sock in receivers:
        sock.setblocking(False)
    conn.send(([s.getsockname()[1] for s in senders], [r.getsockname()[1] for r in receivers]))
    targets: list[int] = conn.recv()
    payload = b"\x55" * 160
    header = struct.Struct("!BBHII")
    pt = 0 if codecs[0] == "PCMU" else 8
    sent = received = 0
    start = time.perf_counter()
    deadline = start
    batch = max(1, rate // 1000)  # send in 1 ms batches
    seq = 0
    while (now := time.perf_counter()) - start < seconds:
        if now >= deadline:
            for i in range(batch):
                k = (sent + i) % pairs
                senders[k].sendto(header.pack(0x80, pt, seq & 0xFFFF, seq * 160 & 0xFFFFFFFF, k) + payload,
                                  ("127.0.0.1", targets[k]))  # fmt: skip
            sent += batch
            seq += 1
            deadline += batch / rate
        for sock in receivers:
            try:
                while True:
                    sock.recv(2048)
                    received += 1
            except BlockingIOError:
                pass
    settle = time.perf_counter() + 0.3
    while time.perf_counter() < settle:
        for sock in receivers:
            try:
                while True:
                    sock.recv(2048)
                    received += 1
            except BlockingIOError:
                pass
    conn.send((sent, received, time.perf_counter() - start))


async def measure(pairs: int, seconds: float, rate: int, transcode: bool) -> dict[str, float]:
    codecs = ("PCMU", "PCMA") if transcode else ("PCMU", "PCMU")
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.Process(target=generator, args=(child, pairs, seconds, rate, codecs))
    process.start()
    try:
        sender_ports, receiver_ports = await asyncio.to_thread(parent.recv)
        engine = MediaEngine(port_min=52000, port_max=54000, rtp_timeout_seconds=3600)
        async with engine:
            targets = []
            for a_port, b_port in zip(sender_ports, receiver_ports, strict=True):
                a = await engine.execute(CreateEndpoint(build_offer("127.0.0.1", a_port, (codecs[0],)).serialize()))
                b = await engine.execute(CreateEndpoint(build_offer("127.0.0.1", b_port, (codecs[1],)).serialize()))
                assert isinstance(a, EndpointCreated) and isinstance(b, EndpointCreated)
                for created in (a, b):
                    await engine.execute(StartSending(created.endpoint_id))  # our answers went out
                await engine.execute(Connect(a.endpoint_id, b.endpoint_id))
                targets.append(a.local_port)
            loop = asyncio.get_running_loop()
            worst_lag = 0.0
            cpu_start = time.process_time()
            parent.send(targets)
            result = loop.run_in_executor(None, parent.recv)
            while not result.done():
                before = loop.time()
                await asyncio.sleep(0.01)
                worst_lag = max(worst_lag, loop.time() - before - 0.01)
            sent, received, wall = await result
            cpu = time.process_time() - cpu_start
    finally:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
    return {
        "sent": sent,
        "relayed": received,
        "loss_percent": 100.0 * (sent - received) / max(1, sent),
        "relayed_per_second": received / wall,
        "relayed_per_cpu_second": received / max(cpu, 1e-9),
        "engine_cpu_percent": 100.0 * cpu / wall,
        "worst_loop_lag_ms": worst_lag * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=int, default=20000, help="offered packets/s in total")
    parser.add_argument("--transcode", action="store_true", help="A side PCMU, B side PCMA")
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args()
    runner = asyncio.run
    loop_name = "asyncio"
    if not args.no_uvloop:
        try:
            import uvloop

            runner = uvloop.run
            loop_name = "uvloop"
        except ImportError:
            pass
    figures = runner(measure(args.pairs, args.seconds, args.rate, args.transcode))
    mode = "PCMU->PCMA" if args.transcode else "PCMU->PCMU"
    print(f"loop={loop_name} pairs={args.pairs} offered={args.rate}/s {mode}")
    for name, value in figures.items():
        print(f"  {name:24} {value:,.1f}")


if __name__ == "__main__":
    main()
