"""``astra.payments.v1.PaymentsService``: thin, proto -> command -> proto.

The verified caller becomes a ``use_cases.Caller``; the object-level rules it
carries (a customer token acts only on its customer's payments; a review is
made by another client than the one that created the payment) live in the
service layer.
"""

from __future__ import annotations

import grpc
from astra.payments.v1 import payments_pb2 as pb
from astra.payments.v1 import payments_pb2_grpc
from chassis.auth import current_requester
from chassis.grpc.context import time_remaining

from payments.adapters.metrics import record_reconciliation
from payments.adapters.protos import (
    alert_rule_filter_from_pb,
    alert_state_filter_from_pb,
    alert_to_pb,
    payment_to_pb,
    report_to_pb,
    resolution_from_pb,
    state_filter_from_pb,
)
from payments.bootstrap import Payments
from payments.domain.model import BankAccount, PaymentRequest
from payments.domain.states import PaymentKind
from payments.service_layer import alerts, use_cases
from payments.service_layer.creation import submit_creation
from payments.service_layer.use_cases import Caller


def _caller() -> Caller:
    return Caller.of(current_requester())


class PaymentsServicer(payments_pb2_grpc.PaymentsServiceServicer):
    def __init__(self, app: Payments) -> None:
        self._app = app
        self._deps = app.deps

    def CreatePayout(
        self, request: pb.CreatePayoutRequest, context: grpc.ServicerContext
    ) -> pb.CreatePayoutResponse:
        caller = _caller()
        payment = submit_creation(
            self._deps,
            self._app.creator,
            PaymentRequest(
                payment_id=request.payment_id,
                kind=PaymentKind.PAYOUT,
                customer_id=request.customer_id,
                amount=request.amount,
                currency=request.currency,
                counterparty=BankAccount(
                    request.destination.account_number,
                    request.destination.holder_name,
                    request.destination.country,
                ),
                description=request.description,
                requested_by=caller.requester,
            ),
            "destination",
            caller,
            time_remaining(context),
        )
        return pb.CreatePayoutResponse(payment=payment_to_pb(payment))

    def CreateCollection(
        self, request: pb.CreateCollectionRequest, context: grpc.ServicerContext
    ) -> pb.CreateCollectionResponse:
        caller = _caller()
        payment = submit_creation(
            self._deps,
            self._app.creator,
            PaymentRequest(
                payment_id=request.payment_id,
                kind=PaymentKind.COLLECTION,
                customer_id=request.customer_id,
                amount=request.amount,
                currency=request.currency,
                counterparty=BankAccount(
                    request.source.account_number,
                    request.source.holder_name,
                    request.source.country,
                ),
                description=request.description,
                requested_by=caller.requester,
            ),
            "source",
            caller,
            time_remaining(context),
        )
        return pb.CreateCollectionResponse(payment=payment_to_pb(payment))

    def RefundPayment(
        self, request: pb.RefundPaymentRequest, context: grpc.ServicerContext
    ) -> pb.RefundPaymentResponse:
        refund = use_cases.refund_payment(
            self._deps,
            request.refund_id,
            request.payment_id,
            request.amount,
            request.reason,
            _caller(),
        )
        return pb.RefundPaymentResponse(refund=payment_to_pb(refund))

    def CancelPayment(
        self, request: pb.CancelPaymentRequest, context: grpc.ServicerContext
    ) -> pb.CancelPaymentResponse:
        payment = use_cases.cancel_payment(
            self._deps, request.payment_id, request.reason, _caller()
        )
        return pb.CancelPaymentResponse(payment=payment_to_pb(payment))

    def ApprovePayment(
        self, request: pb.ApprovePaymentRequest, context: grpc.ServicerContext
    ) -> pb.ApprovePaymentResponse:
        payment = use_cases.approve_payment(self._deps, request.payment_id, request.note, _caller())
        return pb.ApprovePaymentResponse(payment=payment_to_pb(payment))

    def RejectPayment(
        self, request: pb.RejectPaymentRequest, context: grpc.ServicerContext
    ) -> pb.RejectPaymentResponse:
        payment = use_cases.reject_payment(self._deps, request.payment_id, request.note, _caller())
        return pb.RejectPaymentResponse(payment=payment_to_pb(payment))

    def GetPayment(
        self, request: pb.GetPaymentRequest, context: grpc.ServicerContext
    ) -> pb.GetPaymentResponse:
        payment = use_cases.get_payment(self._deps, request.payment_id, _caller())
        return pb.GetPaymentResponse(payment=payment_to_pb(payment))

    def ListPayments(
        self, request: pb.ListPaymentsRequest, context: grpc.ServicerContext
    ) -> pb.ListPaymentsResponse:
        state = state_filter_from_pb(request.state)
        page = use_cases.list_payments(
            self._deps, request.page_size, request.page_token, request.customer_id, state, _caller()
        )
        return pb.ListPaymentsResponse(
            payments=[payment_to_pb(p, history=False, summary=True) for p in page.items],
            next_page_token=page.next_page_token,
        )

    def RunReconciliation(
        self, request: pb.RunReconciliationRequest, context: grpc.ServicerContext
    ) -> pb.RunReconciliationResponse:
        report = use_cases.run_reconciliation(self._deps, request.run_id, request.statement_date)
        record_reconciliation(report)
        return pb.RunReconciliationResponse(run=report_to_pb(report))

    def GetReconciliationRun(
        self, request: pb.GetReconciliationRunRequest, context: grpc.ServicerContext
    ) -> pb.GetReconciliationRunResponse:
        report = use_cases.get_reconciliation_run(self._deps, request.run_id)
        return pb.GetReconciliationRunResponse(run=report_to_pb(report))

    def ListAlerts(
        self, request: pb.ListAlertsRequest, context: grpc.ServicerContext
    ) -> pb.ListAlertsResponse:
        page = alerts.list_alerts(
            self._deps,
            request.page_size,
            request.page_token,
            request.customer_id,
            alert_state_filter_from_pb(request.state),
            alert_rule_filter_from_pb(request.rule),
            _caller(),
        )
        return pb.ListAlertsResponse(
            alerts=[alert_to_pb(a) for a in page.items], next_page_token=page.next_page_token
        )

    def ResolveAlert(
        self, request: pb.ResolveAlertRequest, context: grpc.ServicerContext
    ) -> pb.ResolveAlertResponse:
        alert = alerts.resolve_alert(
            self._deps,
            request.alert_id,
            resolution_from_pb(request.resolution),
            request.note,
            _caller(),
        )
        return pb.ResolveAlertResponse(alert=alert_to_pb(alert))
