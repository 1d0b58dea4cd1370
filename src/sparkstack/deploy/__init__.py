"""Deploying a stack the way the seeds do, without their traps: the nginx site
in front of the gateway, a compose file, a systemd unit, host checks (`doctor`)
and staging the weights ahead of serving (`pull`)."""
