/*
 * pkube pause: the infra process of a sandbox. It holds the sandbox's
 * namespaces, sleeps, reaps the zombies it inherits as a pid namespace's init,
 * and exits 0 on SIGTERM or SIGINT.
 */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
	sigset_t set;
	int sig;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	for (;;) {
		if (sigwait(&set, &sig) != 0) continue;
		if (sig == SIGTERM || sig == SIGINT) return 0;
		while (waitpid(-1, NULL, WNOHANG) > 0) {}
	}
}
