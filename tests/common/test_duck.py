"""What counts as an interrupt: the signal itself, DuckDB's word for it, or an error raised while handling it."""
import duckdb
import pytest
from prefect.exceptions import TerminationSignal

from b12lab.common.duck import interrupt_behind


def raised_while_handling(interrupt: BaseException, error: Exception) -> Exception:
    try:
        try:
            raise interrupt
        except BaseException:
            raise error  # noqa: B904 (the implicit context is the point)
    except Exception as caught:
        return caught


def test_a_signal_is_its_own_interrupt():
    for interrupt in (KeyboardInterrupt(), TerminationSignal(signal=15), RuntimeError("Query interrupted"),
                      duckdb.InterruptException("interrupted")):
        assert interrupt_behind(interrupt) is interrupt


def test_an_error_raised_while_a_signal_was_handled_is_that_signal():
    # Prefect's task engine, hit by SIGTERM as it creates a task run, fails with "Task run is not set".
    signal = TerminationSignal(signal=15)
    error = raised_while_handling(signal, ValueError("Task run is not set"))
    assert interrupt_behind(error) is signal
    outer = ValueError("wrapped")
    outer.__cause__ = error
    assert interrupt_behind(outer) is signal


@pytest.mark.parametrize("error", [ValueError("Task run is not set"), RuntimeError("Query interrupted by a user?"),
                                   SystemExit(0)])
def test_an_error_with_no_signal_behind_it_is_not_an_interrupt(error):
    assert interrupt_behind(error) is None
    assert interrupt_behind(raised_while_handling(ValueError("first"), ValueError("second"))) is None


def test_a_cycle_of_contexts_ends():
    first, second = ValueError("first"), ValueError("second")
    first.__context__, second.__context__ = second, first
    assert interrupt_behind(first) is None
