// compat_protector.c - a co that returns instead of calling aco_exit()
// reaches the protector: the thread's last word function (aco_thread_init's
// argument) runs with aco_get_co() naming the offending co, then the
// process aborts; without a last word the default one reports the co on
// stderr and aborts.  Each case runs in a child process; the parent checks
// how it died and what it said.
#include "aco.h"
#include <signal.h>
#include <sys/wait.h>
#include "aco_assert_override.h"

static aco_t* gl_offender;

void co_fp_returns(void){
    gl_offender = aco_get_co();
    aco_yield();
    // returns: the protector is next
}

void last_word(void){
    aco_t* co = aco_get_co();
    fprintf(stderr, "last word: co %s, fp %s\n",
        co == gl_offender ? "is the offender" : "is NOT the offender",
        co->fp == co_fp_returns ? "is co_fp_returns" : "is wrong");
}

static void child(int custom){
    aco_thread_init(custom ? last_word : NULL);
    aco_t* main_co = aco_create(NULL, NULL, 0, NULL, NULL);
    aco_share_stack_t* sstk = aco_share_stack_new(0);
    aco_t* co = aco_create(main_co, sstk, 0, co_fp_returns, NULL);
    aco_resume(co);
    fprintf(stderr, "yielded once\n");
    aco_resume(co);
    fprintf(stderr, "UNREACHABLE: the process went on\n");
    exit(0);
}

// runs child(custom), returns its stderr and how it ended
static const char* run(int custom, int* status){
    static char buf[4096];
    int p[2];
    assert(pipe(p) == 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert(pid >= 0);
    if(pid == 0){
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        child(custom);
    }
    close(p[1]);
    size_t n = 0;
    ssize_t r;
    while(n < sizeof(buf) - 1 && (r = read(p[0], buf + n, sizeof(buf) - 1 - n)) > 0){
        n += (size_t)r;
    }
    buf[n] = 0;
    close(p[0]);
    assert(waitpid(pid, status, 0) == pid);
    return buf;
}

int main(void){
    int st;
    const char* out = run(1, &st);
    printf("custom last word, child said:\n%s", out);
    assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    assert(strstr(out, "yielded once") != NULL);
    assert(strstr(out, "last word: co is the offender, fp is co_fp_returns") != NULL);
    assert(strstr(out, "UNREACHABLE") == NULL);

    out = run(0, &st);
    printf("default last word, child said:\n%s", out);
    assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    assert(strstr(out, "yielded once") != NULL);
    assert(strstr(out, "aco_exit") != NULL); // names the rule it broke
    assert(strstr(out, "last word") == NULL && strstr(out, "UNREACHABLE") == NULL);
    printf("protector: ok\n");
    return 0;
}
