"""plotext (5.3 API) charts: data in, text out. No database, no models; the callers pass plain lists.

Colour is left out when ``color`` is false (NO_COLOR, pipes, tests) so the text is stable.
"""

from __future__ import annotations

from collections.abc import Sequence


def _ticks(labels: Sequence[str], n: int = 5) -> tuple[list[int], list[str]]:
    if not labels:
        return [], []
    step = max(1, (len(labels) - 1) // max(n - 1, 1))
    idx = list(range(0, len(labels), step))
    if idx[-1] != len(labels) - 1 and len(labels) - 1 - idx[-1] > step // 2:
        idx.append(len(labels) - 1)
    return idx, [labels[i] for i in idx]


def _zero_floor(plt, values: Sequence[float]) -> None:
    """Spend, tokens and requests are never negative: start the y axis at 0 (plotext would centre an
    all-zero series on 0 and label ticks down to -1)."""
    if values and min(values) >= 0:
        top = max(values)
        plt.ylim(0, top * 1.02 if top > 0 else 1.0)


def _finish(plt, color: bool) -> str:
    text = plt.build()
    plt.clf()
    return text if color else plt.uncolorize(text)


def forecast_chart(
    history: Sequence[tuple[str, float]],
    forecast: Sequence[tuple[str, float, float, float]],
    *,
    title: str = "",
    width: int = 100,
    height: int = 20,
    color: bool = False,
) -> str:
    """History line, forecast median and its 80% band (drawn as two dotted lines: plotext has no fill).

    ``history``: (label, value); ``forecast``: (label, yhat, lower_80, upper_80). Labels are x-tick texts.
    """
    import plotext as plt

    plt.clf()
    plt.plotsize(max(width, 30), max(height, 8))
    plt.theme("pro" if color else "clear")
    labels = [h[0] for h in history] + [f[0] for f in forecast]
    nh = len(history)
    if history:
        plt.plot(list(range(nh)), [float(h[1]) for h in history], label="history")
    if forecast:
        # Start the forecast at the last history point so the two lines join.
        xs = list(range(nh, nh + len(forecast)))
        if history:
            xs = [nh - 1, *xs]
            first = float(history[-1][1])
            yh = [first] + [float(f[1]) for f in forecast]
            lo = [first] + [float(f[2]) for f in forecast]
            hi = [first] + [float(f[3]) for f in forecast]
        else:
            yh, lo, hi = ([float(f[i]) for f in forecast] for i in (1, 2, 3))
        plt.plot(xs, hi, label="80% band", marker="dot")
        plt.plot(xs, lo, marker="dot")
        # A thin braille line: the forecast stays apart from the history without colour (NO_COLOR, pipes).
        plt.plot(xs, yh, label="forecast", marker="braille")
    _zero_floor(plt, [float(h[1]) for h in history] + [float(v) for f in forecast for v in f[1:4]])
    ticks, names = _ticks(labels)
    if ticks:
        plt.xticks(ticks, names)
    if title:
        plt.title(title)
    return _finish(plt, color)


def window_chart(
    labels: Sequence[str],
    observed: Sequence[float],
    usual: Sequence[float],
    *,
    title: str = "",
    width: int = 80,
    height: int = 14,
    color: bool = False,
) -> str:
    """An anomaly window against the usual level for the same hours of the week."""
    import plotext as plt

    plt.clf()
    plt.plotsize(max(width, 30), max(height, 8))
    plt.theme("pro" if color else "clear")
    xs = list(range(len(labels)))
    if xs:
        plt.plot(xs, [float(v) for v in usual], label="usual", marker="dot")
        plt.plot(xs, [float(v) for v in observed], label="observed")
        _zero_floor(plt, [float(v) for v in (*usual, *observed)])
        ticks, names = _ticks(list(labels))
        plt.xticks(ticks, names)
    if title:
        plt.title(title)
    return _finish(plt, color)
