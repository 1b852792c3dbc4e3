"""The workload's accounts: a few hot ones per currency, limited both ways."""

from __future__ import annotations

from dataclasses import dataclass

from astra.ledger.v1 import ledger_pb2 as pb

DEBIT = pb.NORMAL_SIDE_DEBIT
CREDIT = pb.NORMAL_SIDE_CREDIT


@dataclass(frozen=True, slots=True)
class AccountDef:
    id: str
    currency: str
    normal_side: pb.NormalSide.ValueType
    # reserve (the bank's cash, funds wallets), wallet, merchant, loan, fx, receivable
    role: str
    # debits_must_not_exceed_credits: cannot be overdrawn.
    no_overdraft: bool = False
    # credits_must_not_exceed_debits: a loan cannot be repaid past what was lent.
    no_excess_credit: bool = False

    def to_pb(self) -> pb.Account:
        return pb.Account(
            id=self.id,
            currency=self.currency,
            normal_side=self.normal_side,
            debits_must_not_exceed_credits=self.no_overdraft,
            credits_must_not_exceed_debits=self.no_excess_credit,
            metadata={"role": self.role},
        )


@dataclass(frozen=True)
class Chart:
    accounts: tuple[AccountDef, ...]

    @property
    def currencies(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(a.currency for a in self.accounts))

    def get(self, account_id: str) -> AccountDef:
        for account in self.accounts:
            if account.id == account_id:
                return account
        raise KeyError(account_id)

    def of(self, currency: str, role: str) -> list[AccountDef]:
        return [a for a in self.accounts if a.currency == currency and a.role == role]

    def one(self, currency: str, role: str) -> AccountDef:
        (account,) = self.of(currency, role)
        return account

    @property
    def limited(self) -> list[AccountDef]:
        return [a for a in self.accounts if a.no_overdraft or a.no_excess_credit]


def _currency(code: str, wallets: int, *, loan: bool, fx: bool) -> list[AccountDef]:
    c = code.lower()
    accounts = [
        AccountDef(f"acct_{c}_reserve", code, DEBIT, "reserve"),
        *(
            AccountDef(f"acct_{c}_wallet_{n}", code, CREDIT, "wallet", no_overdraft=True)
            for n in range(1, wallets + 1)
        ),
        AccountDef(f"acct_{c}_merchant", code, CREDIT, "merchant"),
        AccountDef(f"acct_{c}_receivable", code, DEBIT, "receivable"),
    ]
    if loan:
        accounts.append(AccountDef(f"acct_{c}_loan", code, DEBIT, "loan", no_excess_credit=True))
    if fx:
        accounts.append(AccountDef(f"acct_{c}_fx", code, CREDIT, "fx"))
    return accounts


def bank_chart() -> Chart:
    """EUR and USD (exponent 2) with FX between them, JPY (exponent 0); few, hot accounts."""
    return Chart(
        (
            *_currency("EUR", 4, loan=True, fx=True),
            *_currency("USD", 2, loan=True, fx=True),
            *_currency("JPY", 1, loan=False, fx=False),
        )
    )
