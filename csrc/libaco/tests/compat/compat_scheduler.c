// compat_scheduler.c - a simple round-robin scheduler over many co on a
// few share stacks, as libaco's last tutorial has it, and libaco's "best
// practice": run once, read each co's save_stack.max_cpsz, and create the
// next generation with that save_stack_sz so that no save stack ever has
// to grow.
#include "aco.h"
#include "aco_assert_override.h"

#define COS 64
#define STACKS 4
#define STEPS 20

typedef struct {
    int id;
    int step;
    unsigned sum;
} task_t;

// a varying depth of real frames between the co function and its yields
static unsigned work(task_t* t, int depth){
    volatile unsigned char frame[48];
    for(size_t i = 0; i < sizeof(frame); i++){
        frame[i] = (unsigned char)(t->id + depth + i);
    }
    if(depth > 0){
        unsigned r = work(t, depth - 1);
        return r + frame[depth % sizeof(frame)];
    }
    aco_yield();
    t->step++;
    return frame[0];
}

void task_fp(void){
    task_t* t = (task_t*)aco_get_arg();
    while(t->step < STEPS){
        t->sum += work(t, (t->id + t->step) % 5);
    }
    aco_exit();
}

static unsigned expected_sum(int id){
    unsigned s = 0;
    for(int step = 0; step < STEPS; step++){
        int depth = (id + step) % 5;
        unsigned r = (unsigned char)(id + 0);
        for(int d = 1; d <= depth; d++){
            r += (unsigned char)(id + d + d % 48);
        }
        s += r;
    }
    return s;
}

// runs every task to its end; returns how many resumes it took
static int schedule(aco_t** cos){
    int resumes = 0, live = COS;
    while(live > 0){
        live = 0;
        for(int i = 0; i < COS; i++){
            if(cos[i]->is_end) continue;
            aco_resume(cos[i]);
            resumes++;
            live += !cos[i]->is_end;
        }
    }
    return resumes;
}

int main(void){
    aco_thread_init(NULL);
    aco_t* main_co = aco_create(NULL, NULL, 0, NULL, NULL);
    aco_share_stack_t* sstk[STACKS];
    for(int i = 0; i < STACKS; i++){
        sstk[i] = aco_share_stack_new(0);
    }
    aco_t* cos[COS];
    task_t tasks[COS];
    size_t max_cpsz[COS];
    for(int gen = 0; gen < 2; gen++){
        size_t save_sz[COS];
        for(int i = 0; i < COS; i++){
            tasks[i] = (task_t){.id = i};
            // generation 1 is right-sized from generation 0
            cos[i] = aco_create(main_co, sstk[i % STACKS],
                gen ? max_cpsz[i] : 0, task_fp, &tasks[i]);
            save_sz[i] = cos[i]->save_stack.sz;
        }
        int resumes = schedule(cos);
        assert(resumes == COS * (STEPS + 1));
        for(int i = 0; i < COS; i++){
            assert(tasks[i].step == STEPS);
            assert(tasks[i].sum == expected_sum(i));
            assert(cos[i]->save_stack.max_cpsz > 0);
            assert(cos[i]->save_stack.sz >= cos[i]->save_stack.max_cpsz);
            if(gen == 0){
                max_cpsz[i] = cos[i]->save_stack.max_cpsz;
            } else {
                // the same program copies the same bytes, and a save stack
                // created that big never had to grow
                assert(cos[i]->save_stack.max_cpsz == max_cpsz[i]);
                assert(save_sz[i] >= max_cpsz[i]);
                assert(cos[i]->save_stack.sz == save_sz[i]);
            }
            aco_destroy(cos[i]);
        }
    }
    for(int i = 0; i < STACKS; i++){
        aco_share_stack_destroy(sstk[i]);
    }
    aco_destroy(main_co);
    printf("scheduler: %d co, %d steps each: ok\n", COS, STEPS);
    return 0;
}
