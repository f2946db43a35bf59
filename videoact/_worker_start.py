"""The first code a videoact worker process runs, as its ``__main__`` (see
:func:`videoact.spawn.main_script_hidden` with ``deaf_to_ctrl_c``): Ctrl-C is ignored from
here until the worker is ready to end quietly on it. Nothing heavy is imported before this."""
import signal

# What the worker would have had: SIG_IGN when its parent ignores Ctrl-C (a background job),
# which it then keeps (videoact.spawn.hear_ctrl_c).
INHERITED_SIGINT = signal.getsignal(signal.SIGINT)
signal.signal(signal.SIGINT, signal.SIG_IGN)
