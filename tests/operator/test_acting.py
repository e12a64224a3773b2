"""Acting is never cut half-way: a step that times out or is cancelled waits for the write to end."""

from __future__ import annotations

import asyncio

import pytest

from accord.operator.loop import to_the_end


@pytest.mark.parametrize("how", ["timeout", "cancel"])
def test_a_step_cut_short_lets_acting_finish_before_it_gives_up(how: str) -> None:
    done: list[str] = []

    async def acting() -> None:
        await asyncio.sleep(0.3)  # the executor's write, then the record's phase
        done.append("written")

    async def run() -> None:
        if how == "timeout":
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(to_the_end(acting()), timeout=0.05)
        else:
            step = asyncio.ensure_future(to_the_end(acting()))
            await asyncio.sleep(0.05)
            step.cancel()
            with pytest.raises(asyncio.CancelledError):
                await step
        assert done == ["written"], "the step gave up only once acting had ended"

    asyncio.run(run())


def test_what_acting_raises_reaches_the_step() -> None:
    async def failing() -> None:
        raise RuntimeError("the API server refused")

    with pytest.raises(RuntimeError, match="refused"):
        asyncio.run(to_the_end(failing()))
