/* http_engine.c - the library's unit of the HTTP engine (mtev_http.c) and
 * the REST layer (mtev_rest.c): compiled together, the REST dispatcher's
 * calls of the engine's accessors (the request's facts, the coroutine
 * asked for, the drive from the connection's callback) are inline. */
#include "../mtev_http.c"
#include "../mtev_rest.c"
