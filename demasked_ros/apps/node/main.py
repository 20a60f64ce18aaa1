"""``demasked-node``: run :class:`DemaskedNode`, configured and activated at once.

Usage::

    demasked-node [--no-autostart] --ros-args --params-file FILE -p name:=value

Exit codes: 0 after a clean shutdown (Ctrl-C, SIGTERM, or a lifecycle ``shutdown``), 2 for a
configuration error (one ``demasked-node: error: ...`` line on stderr), 1 for anything else.
With ``--no-autostart`` the node waits unconfigured for a lifecycle manager.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from types import FrameType

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    from rclpy.utilities import remove_ros_args

    parser = argparse.ArgumentParser(
        prog="demasked-node",
        description="Certified semantic segmentation node (DEMASKED SMOOTHING). ROS parameters go "
                    "after --ros-args (-p name:=value, --params-file FILE, -r image:=/camera/image_raw).")
    parser.add_argument("--no-autostart", action="store_true",
                        help="do not configure/activate; wait for lifecycle transitions")
    parser.add_argument("--print-default-params", action="store_true",
                        help="print the parameters YAML with every default and exit")
    return parser.parse_args(remove_ros_args(list(argv))[1:])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the node until shutdown; see the module docstring for arguments and exit codes."""
    args_list = list(sys.argv if argv is None else ["demasked-node", *argv])
    options = _parse(args_list)
    if options.print_default_params:
        from demasked_ros.apps.node.params import defaults_yaml

        print(defaults_yaml(), end="")
        return EXIT_OK

    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.lifecycle import TransitionCallbackReturn

    try:
        import demasked_ros_interfaces.msg  # noqa: F401
    except ImportError:
        from demasked_ros.rosio.ros_env import RosEnvironmentError, ensure_interfaces_importable

        try:
            ensure_interfaces_importable()
        except RosEnvironmentError as error:
            print(f"demasked-node: error: {error}", file=sys.stderr)
            return EXIT_CONFIG
    from demasked_ros.apps.node.node import DemaskedNode

    try:
        rclpy.init(args=args_list, signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    except Exception as error:  # malformed --ros-args
        print(f"demasked-node: error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    stop = {"requested": False}

    def _request_stop(signum: int, _frame: FrameType | None) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGINT, _request_stop)
    signal.signal(signal.SIGTERM, _request_stop)
    node = None
    try:
        node = DemaskedNode()
        if not options.no_autostart:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                print(f"demasked-node: error: {node.configure_error}", file=sys.stderr)
                return EXIT_CONFIG
            if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                print("demasked-node: error: activation failed", file=sys.stderr)
                return EXIT_FAILURE
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not stop["requested"] and rclpy.ok() and node.state_name != "finalized":
            executor.spin_once(timeout_sec=0.1)
        return EXIT_OK
    except (KeyboardInterrupt, ExternalShutdownException):
        return EXIT_OK
    except Exception as error:
        print(f"demasked-node: error: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        if node is not None:
            if node.state_name not in ("finalized", "unconfigured"):
                node.trigger_shutdown()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    sys.exit(main())
