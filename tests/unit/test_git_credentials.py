"""The worker's credential server answers the helper of the git it started for an operation, and nobody else."""

import subprocess
import sys

from yudai_solver.base.git_credentials import HELPER, Credential, server


def test_the_credential_goes_only_to_a_descendant_of_the_operations_git_and_for_its_host():
    credentials = server()
    credential = Credential("https://git.example.test:8443/acme/widgets", "x-access-token", "s3cret-value")

    helper = [sys.executable, "-I", "-S", str(HELPER), str(credentials.path), "get"]

    def ask_as_grandchild(host: str) -> subprocess.Popen[bytes]:
        """The helper under a shell, as git runs it: the grant names the shell."""
        request = f"protocol=https\nhost={host}\n\n"
        return subprocess.Popen(["sh", "-c", 'printf "$0" | "$@"', request, *helper], stdout=subprocess.PIPE)

    with credentials.grant(credential) as grant:
        own = ask_as_grandchild("git.example.test:8443")
        grant.bind(own.pid)
        answered = own.communicate(timeout=30)[0].decode()
    with credentials.grant(credential) as grant:
        other_host = ask_as_grandchild("evil.example.test")
        grant.bind(other_host.pid)
        refused_host = other_host.communicate(timeout=30)[0].decode()
    with credentials.grant(credential) as grant:
        bystander = subprocess.Popen(["sleep", "30"])
        grant.bind(bystander.pid)
        request = b"protocol=https\nhost=git.example.test:8443\n\n"
        refused_stranger = subprocess.run(helper, input=request, capture_output=True, timeout=30).stdout.decode()
        bystander.kill()
        bystander.wait()

    assert answered == "username=x-access-token\npassword=s3cret-value\n"
    assert refused_host == "" and refused_stranger == ""
    assert "s3cret" not in repr(credential)
