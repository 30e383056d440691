"""SMA cross: long while the fast moving average is above the slow one, flat otherwise.

Run its report:  quantlab report --strategy notebooks/strategies/sma_cross.py -p fast 10 -o sma.ipynb
"""


def signals(data, fast=10, slow=100):
    fast_ma = data.close.rolling(fast).mean()
    slow_ma = data.close.rolling(slow).mean()
    return (fast_ma > slow_ma).astype(float)
