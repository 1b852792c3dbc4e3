"""The rules and timings payments follow, as one value (built from settings). Pure."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta

from screening.matcher import Screener

from payments.domain.fees import FeeSchedule
from payments.domain.fraud import FraudRules
from payments.domain.limits import AmountLimits
from payments.domain.model import PaymentRequest
from payments.domain.monitoring import MonitoringRules
from payments.domain.risk_score import ScoreThresholds
from payments.domain.states import PaymentKind


@dataclass(frozen=True)
class Policy:
    fees: FeeSchedule = field(default_factory=FeeSchedule)
    fraud: FraudRules = field(default_factory=FraudRules)
    limits: AmountLimits = field(default_factory=AmountLimits)
    monitoring: MonitoringRules = field(default_factory=MonitoringRules)
    score_thresholds: ScoreThresholds = field(default_factory=ScoreThresholds)
    # How long a payment is left to whoever works on it (a hold, a bank call) before
    # another worker may take it over.
    lease: timedelta = timedelta(seconds=30)
    status_poll: timedelta = timedelta(seconds=60)
    retry_max_seconds: float = 60.0
    # Failed attempts after which a payment is reported as unable to progress.
    stuck_after: int = 10
    # The sanctions list new payments are screened against; None: screening is off.
    sanctions: Screener | None = None
    # Draws the jitter of retry backoffs (a simulation seeds its own: one seed, one run).
    jitter: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def fee_for(self, request: PaymentRequest) -> int:
        """The fee a request pays: payouts only."""
        if request.kind is not PaymentKind.PAYOUT:
            return 0
        return self.fees.fee_for(request.amount, request.currency)
