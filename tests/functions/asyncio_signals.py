"""An async handler whose event loop takes SIGTERM (loop.add_signal_handler), as
async apps do: asyncio moves the wakeup fd to its loop, and on closing leaves
SIGTERM at its default action."""

import asyncio
import signal

STOPS = []


async def serve(n):
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, STOPS.append, "stop")
    await asyncio.sleep(0)
    return n * 2  # marker: async-result


def handler(event, context):
    return {"result": asyncio.run(serve(event.get("n", 1)))}
