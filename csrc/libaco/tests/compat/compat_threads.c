// compat_threads.c - one libaco instance per thread, as libaco's
// multithreaded tutorial has it: each thread calls aco_thread_init, makes
// its own main co, share stacks and co; a global counter shared by all
// threads is protected by the program itself.
#include "aco.h"
#include <pthread.h>
#include "aco_assert_override.h"

#define THREADS 4
#define COS_PER_THREAD 6
#define YIELDS 500

static pthread_mutex_t gl_lock = PTHREAD_MUTEX_INITIALIZER;
static long gl_race_aco_yield_ct;

typedef struct {
    pthread_t owner;
    int yields;
} co_arg_t;

void co_fp0(void){
    co_arg_t* arg = (co_arg_t*)aco_get_arg();
    aco_t* me = aco_get_co();
    for(int i = 0; i < YIELDS; i++){
        // never moves between threads, and stays itself
        assert(pthread_equal(arg->owner, pthread_self()));
        assert(aco_get_co() == me);
        pthread_mutex_lock(&gl_lock);
        gl_race_aco_yield_ct++;
        pthread_mutex_unlock(&gl_lock);
        arg->yields++;
        aco_yield();
    }
    aco_exit();
}

void* thread_main(void* unused){
    (void)unused;
    aco_thread_init(NULL);
    aco_t* main_co = aco_create(NULL, NULL, 0, NULL, NULL);
    // two share stacks, three co on each
    aco_share_stack_t* sstk[2] = {aco_share_stack_new(0), aco_share_stack_new(0)};
    aco_t* cos[COS_PER_THREAD];
    co_arg_t args[COS_PER_THREAD];
    for(int i = 0; i < COS_PER_THREAD; i++){
        args[i].owner = pthread_self();
        args[i].yields = 0;
        cos[i] = aco_create(main_co, sstk[i % 2], 0, co_fp0, &args[i]);
    }
    int ended = 0;
    while(ended < COS_PER_THREAD){
        ended = 0;
        for(int i = 0; i < COS_PER_THREAD; i++){
            if(cos[i]->is_end){
                ended++;
                continue;
            }
            aco_resume(cos[i]);
            assert(aco_get_co() == main_co);
        }
    }
    for(int i = 0; i < COS_PER_THREAD; i++){
        assert(args[i].yields == YIELDS);
        assert(cos[i]->save_stack.ct_save > 0); // they shared stacks
        aco_destroy(cos[i]);
    }
    aco_share_stack_destroy(sstk[0]);
    aco_share_stack_destroy(sstk[1]);
    aco_destroy(main_co);
    return NULL;
}

int main(void){
    pthread_t t[THREADS];
    for(int i = 0; i < THREADS; i++){
        assert(pthread_create(&t[i], NULL, thread_main, NULL) == 0);
    }
    for(int i = 0; i < THREADS; i++){
        assert(pthread_join(t[i], NULL) == 0);
    }
    assert(gl_race_aco_yield_ct == (long)THREADS * COS_PER_THREAD * YIELDS);
    printf("threads: %ld yields: ok\n", gl_race_aco_yield_ct);
    return 0;
}
