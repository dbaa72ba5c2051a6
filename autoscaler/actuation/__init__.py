"""Acting on the cluster: the actuator that sends a decision's patch, and the Lease that says which
replica may."""
