"""``apf replay``: provisioning quality of scheduler chains and peer policies on recorded workloads.

``traces`` reads workloads, ``model`` simulates the site in simulated time,
``policies`` holds the policies, ``report`` the table and the plots.
"""
