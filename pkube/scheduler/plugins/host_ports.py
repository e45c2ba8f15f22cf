"""A hostPort may be used once per (protocol, port) on a node; 0.0.0.0 conflicts with any IP."""

from pkube.scheduler.types import SUCCESS, Status, unschedulable

NAME = "NodePorts"
REASON = "node(s) didn't have free ports for the requested pod ports"
ANY_IP = "0.0.0.0"


def conflicts(wanted: tuple, used: tuple) -> bool:
    """(ip, protocol, port) pairs clash on the same protocol and port unless both IPs are distinct."""
    (ip, proto, port), (used_ip, used_proto, used_port) = wanted, used
    if proto != used_proto or port != used_port:
        return False
    return ip == used_ip or ANY_IP in (ip, used_ip)


def skip_filter(pod) -> bool:
    return not pod.host_ports


def filter_key(pod):
    return pod.host_ports


def filter(pod, node) -> Status:
    for wanted in pod.host_ports:
        if any(conflicts(wanted, used) for used in node.used_ports):
            return unschedulable(REASON)
    return SUCCESS
