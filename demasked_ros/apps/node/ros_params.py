"""The node's parameters on the ROS side: declared with descriptors and ranges, and read back.

The table itself and its validation live in :mod:`.params` (no rclpy there, so tests and tools
validate values without ROS); this module only talks to an rclpy node.
"""

from __future__ import annotations

from typing import Any

from demasked_ros.apps.node.params import PARAMETERS, ParamSpec


def declare_parameters(node: Any) -> list[str]:
    """Declare every parameter on an rclpy ``node`` with descriptors and ranges.

    A value from ``--params-file`` or ``-p`` that ROS refuses (wrong type, out of range) does not
    crash the constructor: the parameter falls back to its default and the problem is returned,
    so that ``configure`` can fail with all the messages.
    """
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
    from rclpy.parameter import Parameter

    problems: list[str] = []
    for spec in PARAMETERS:
        descriptor = _descriptor(spec)
        default: Any = spec.default
        if spec.array_type == "string" and not default:
            default = Parameter.Type.STRING_ARRAY  # an empty list cannot carry its type
        try:
            node.declare_parameter(spec.name, default, descriptor)
        except (InvalidParameterTypeException, InvalidParameterValueException) as error:
            problems.append(f"parameter {spec.name!r}: {error}")
            node.declare_parameter(spec.name, default, descriptor, ignore_override=True)
    return problems


def read_parameters(node: Any) -> dict[str, Any]:
    """Current values of every declared parameter (unset string arrays read as empty lists)."""
    from rclpy.exceptions import ParameterUninitializedException

    values: dict[str, Any] = {}
    for spec in PARAMETERS:
        try:
            value = node.get_parameter(spec.name).value
        except ParameterUninitializedException:
            value = []
        values[spec.name] = list(value) if spec.array_type is not None else value
    return values


def _descriptor(spec: ParamSpec) -> Any:
    from rcl_interfaces.msg import (
        FloatingPointRange,
        IntegerRange,
        ParameterDescriptor,
        ParameterType,
    )

    kinds = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
             float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}
    if spec.array_type == "string":
        kind = ParameterType.PARAMETER_STRING_ARRAY
    elif spec.array_type == "double":
        kind = ParameterType.PARAMETER_DOUBLE_ARRAY
    else:
        kind = kinds[type(spec.default)]
    constraints = f"one of {list(spec.choices)}" if spec.choices else ""
    descriptor = ParameterDescriptor(name=spec.name, type=kind, description=spec.description,
                                     additional_constraints=constraints)
    if spec.low is not None and spec.high is not None:
        if isinstance(spec.default, int) and not isinstance(spec.default, bool):
            descriptor.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high),
                                                     step=1)]
        elif isinstance(spec.default, float):
            descriptor.floating_point_range = [FloatingPointRange(from_value=float(spec.low),
                                                                  to_value=float(spec.high), step=0.0)]
    return descriptor
