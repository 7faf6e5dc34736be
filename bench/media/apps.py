"""Media applications under load: concurrent recordings (voicemail deposits, call recordings) and conference mixing.

Usage:
    .venv/bin/python bench/media/apps.py record [--streams 200] [--seconds 10] [--no-uvloop]
    .venv/bin/python bench/media/apps.py mix [--conferences 20] [--seconds 10] [--spread] [--no-uvloop]

The media engine runs in this process, on its event loop, exactly as in the exchange. A load generator in a child
process (the other core) plays the callers: one UDP socket per engine endpoint, each sending a 440 Hz G.711 A-law
tone as 20 ms RTP packets (50 packets/s) on absolute deadlines.

- record: every endpoint is recorded into its own WAV (StartRecording, the path a voicemail deposit or a call
  recording takes: decode, 20 ms frames, a writer thread, atomic rename on stop). Afterwards each file is checked
  for gaps: every 20 ms frame of the steady middle must hold the tone (a frame of silence is a gap: a packet the
  recorder did not get in time).
- mix: endpoints are grouped three by three into conferences (CreateMixer): per 20 ms each participant's frame is
  decoded, mixed minus itself and encoded, and sent back to the generator.

Reported: engine CPU (this process, including the writer thread) as a share of one core, per stream or per
conference and participant, the worst event-loop lag, and (record) the gaps found.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import shutil
import socket
import struct
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from hipper.media import g711
from hipper.media.engine import (
    CreateEndpoint,
    CreateMixer,
    EndpointCreated,
    MediaEngine,
    Started,
    StartRecording,
    StartSending,
    StopRecording,
)
from hipper.media.sdp import build_offer
from hipper.media.wavfile import read_wav

TONE_HZ = 440.0


def tone_frames() -> list[bytes]:
    """One second of a 440 Hz tone as 20 ms A-law frames (a whole number of cycles, so it loops seamlessly)."""
    t = np.arange(160 * 50) / 8000
    pcm = (8000 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.int16)
    return [g711.encode(pcm[i : i + 160], g711.PCMA) for i in range(0, len(pcm), 160)]


def generator(conn: Connection, streams: int, seconds: float, spread: bool = False) -> None:
    """Send until told to stop (or `seconds` at most): the stops of many recordings take a while, and a
    recording must hold the tone up to its own stop, else the check would count the sender's end as gaps.

    With `spread`, stream k sends k/streams of a frame after stream 0, as independent phones do, instead of all
    streams at the same instant (which lets the engine read them all in one wake-up)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(streams)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
    conn.send([s.getsockname()[1] for s in sockets])
    targets: list[int] = conn.recv()
    frames = tone_frames()
    header = struct.Struct("!BBHII")
    ssrcs = [random.getrandbits(32) for _ in range(streams)]
    sent = 0
    worst = 0.0  # the latest the generator sent a tick's packets
    late = 0  # ticks the generator itself sent a whole frame late (a starved sender, not the engine's fault)
    start = time.perf_counter()
    tick = 0
    while (now := time.perf_counter()) - start < seconds and not conn.poll():
        deadline = start + tick * 0.020
        if now < deadline:
            time.sleep(deadline - now)
        elif now - deadline > 0.020:
            late += 1
        worst = max(worst, now - deadline)
        payload = frames[tick % len(frames)]
        packet_header = (0x80, 8, tick & 0xFFFF, (tick * 160) & 0xFFFFFFFF)
        for k, sock in enumerate(sockets):
            if spread and k:
                pause = deadline + 0.020 * k / streams - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
            try:
                sock.sendto(header.pack(*packet_header, ssrcs[k]) + payload, ("127.0.0.1", targets[k]))
                sent += 1
            except BlockingIOError:
                pass
            try:
                while True:
                    sock.recv(2048)  # what the engine sends back (silence, or the mix): drained, not judged
            except BlockingIOError:
                pass
        tick += 1
    conn.recv()
    conn.send((sent, late, tick, worst))


def check_recordings(scratch: Path, count: int, seconds: float) -> tuple[int, int, int, int, int]:
    """Gap frames (20 ms without the tone in the steady middle), frames checked, recordings shorter than the run,
    recordings with a gap, and the longest run of gap frames."""
    gaps = checked = short = gapped = longest = 0
    for index in range(count):
        audio = read_wav(scratch / f"{index}.wav")
        middle = audio[8000 : len(audio) - 8000]  # the steady part: after the warm-up, before the stop
        frames = middle[: len(middle) - len(middle) % 160].reshape(-1, 160).astype(np.float64)
        silent = np.sqrt((frames**2).mean(axis=1)) < 1000
        gaps += int(silent.sum())
        checked += len(frames)
        if silent.any():
            gapped += 1
            run = 0
            for value in silent:
                run = run + 1 if value else 0
                longest = max(longest, run)
        if len(audio) < (seconds - 0.5) * 8000:
            short += 1
    return gaps, checked, short, gapped, longest


def udp_receive_buffer_errors() -> int:
    """The kernel's count of UDP datagrams dropped because a socket's receive buffer was full (machine-wide:
    other programs' drops count too, so a run's difference is an upper bound for the engine's)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
    return int(lines[1][lines[0].index("RcvbufErrors")])


async def lag_sampler(samples: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(0.005)
        samples.append(loop.time() - before - 0.005)


async def measured(seconds: float) -> tuple[float, list[float]]:
    """This process's CPU time per wall second over `seconds`, and the event-loop lags seen meanwhile."""
    lags: list[float] = []
    stop = asyncio.Event()
    sampler = asyncio.ensure_future(lag_sampler(lags, stop))
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    share = (time.process_time() - cpu_before) / (time.perf_counter() - wall_before)
    stop.set()
    await sampler
    return share, lags


async def run(mode: str, count: int, seconds: float, spread: bool = False) -> dict[str, float]:
    streams = count if mode == "record" else 3 * count
    span = 4 * streams + 200  # room for ports other programs hold
    base = random.randrange(20000, 60000 - span, 2)
    engine = MediaEngine(port_min=base, port_max=base + span, rtp_timeout_seconds=3600)
    await engine.start()
    # What the engine costs with nothing to do (its 20 ms ticker, this script's lag sampler): subtracted, so the
    # per-conference figure is what one more conference adds.
    idle_share, _ = await measured(min(seconds, 10.0))  # as long as the run (up to 10 s): a small difference
    parent, child = multiprocessing.Pipe()
    warmup = 1.0
    arguments = (child, streams, seconds + warmup + 300.0, spread)
    process = multiprocessing.Process(target=generator, args=arguments, daemon=True)
    process.start()
    ports: list[int] = parent.recv()
    endpoints: list[str] = []
    for port in ports:
        created = await engine.execute(CreateEndpoint(remote_sdp=build_offer("127.0.0.1", port, ("PCMA",)).serialize()))
        assert isinstance(created, EndpointCreated)
        await engine.execute(StartSending(created.endpoint_id))  # our answer went out
        endpoints.append(created.endpoint_id)
    parent.send([engine.local_port(e) for e in endpoints])
    scratch = Path(tempfile.mkdtemp(prefix="hipper-bench-media-"))
    recordings: list[str] = []
    if mode == "record":
        for index, endpoint_id in enumerate(endpoints):
            started = await engine.execute(StartRecording((endpoint_id,), scratch / f"{index}.wav"))
            assert isinstance(started, Started)
            recordings.append(started.id)
    else:
        for index in range(count):
            await engine.execute(CreateMixer(tuple(endpoints[3 * index : 3 * index + 3])))
    await asyncio.sleep(warmup)
    rcvbuf_errors = udp_receive_buffer_errors()
    core_share, lags = await measured(seconds)
    rcvbuf_errors = udp_receive_buffer_errors() - rcvbuf_errors
    stats = [engine.recording_stats(recording_id) for recording_id in recordings]
    for recording_id in recordings:
        await engine.execute(StopRecording(recording_id))
    parent.send("stop")
    _sent, late, ticks, worst_late = await asyncio.to_thread(parent.recv)
    await asyncio.to_thread(process.join, 10)
    await engine.stop()
    result: dict[str, float] = {
        "engine_cpu_share_of_one_core": round(core_share, 4),
        "idle_engine_share": round(idle_share, 4),
        "worst_loop_lag_ms": round(1000 * max(lags, default=0.0), 1),
        "p99_loop_lag_ms": round(1000 * float(np.percentile(lags, 99)) if lags else 0.0, 1),
        "generator_late_ticks_pct": round(100 * late / max(1, ticks), 2),
        "generator_worst_late_ms": round(1000 * worst_late, 1),
        "udp_rcvbuf_errors_machine_wide": rcvbuf_errors,
        "load_average_1min": round(os.getloadavg()[0], 1),
    }
    if mode == "record":
        gaps, checked, short, gapped, longest = await asyncio.to_thread(
            check_recordings, scratch, count, seconds + warmup
        )
        result.update(
            {
                "recordings": count,
                "frames_checked": checked,
                "gap_frames": gaps,
                "recordings_with_gaps": gapped,
                "longest_gap_ms": 20 * longest,
                "late_packets_dropped": sum(item["late_packets_dropped"] for item in stats),
                "streams_placed_afresh": sum(item["streams_placed"] for item in stats) - count,
                "short_recordings": short,
                "recordings_per_core": round(count / (core_share - idle_share)) if core_share > idle_share else 0,
            }
        )
    else:
        result.update(
            {
                "conferences": count,
                "share_per_conference_pct": round(100 * (core_share - idle_share) / max(1, count), 3),
                "share_per_participant_pct": round(100 * (core_share - idle_share) / max(1, 3 * count), 3),
            }
        )
    await asyncio.to_thread(shutil.rmtree, scratch)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("record", "mix"))
    parser.add_argument("--streams", type=int, default=200, help="concurrent recordings (record)")
    parser.add_argument("--conferences", type=int, default=20, help="concurrent three-way conferences (mix)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--spread", action="store_true", help="streams send at different times within a frame")
    parser.add_argument("--no-uvloop", action="store_true", help="the stock asyncio loop (the server uses uvloop)")
    args = parser.parse_args()
    count = args.streams if args.mode == "record" else args.conferences
    runner = asyncio.run
    if not args.no_uvloop:
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            pass
    print(f"loop: {'asyncio' if runner is asyncio.run else 'uvloop'}")
    result = runner(run(args.mode, count, args.seconds, args.spread))
    for key, value in result.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
