"""Pure ML core: series building, forecasting, backtesting, anomaly detection and model serialization.

Modules here import numpy, pandas, prophet and scikit-learn only (heavy imports inside functions), do no
I/O and never read the clock: ``now`` is always passed in. ``series`` turns store rows into regular
series, ``forecast`` fits Prophet (or a labelled seasonal-naive fallback) and derives month-end answers,
``backtest`` measures accuracy by rolling origin, ``serialize`` writes versioned JSON artefacts.
"""

import logging as _logging

# Prophet prints "Importing plotly failed" on import unless this logger is off; every path into Prophet
# goes through this package, so silence it here once, before any of them imports it.
_logging.getLogger("prophet.plot").disabled = True
