"""Code hosts: issue intake, the champion's branch and pull request, webhook triggers (GitHub and local git).

`followup.on_solve_ended` is what a dispatcher calls once a solve has ended.
"""
