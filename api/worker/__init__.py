"""Background work through the task queue: embedding jobs, webhook delivery, the sweep, leases on claimed
work. Imports the store; reaches the flows only through the service context it is handed."""
