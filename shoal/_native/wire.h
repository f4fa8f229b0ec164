/* wire.h -- what records.c needs from wire.c: the wire form's functions, for
 * the _records module's table. Hidden: the extension exports only its init. */
#ifndef SHOAL_WIRE_H
#define SHOAL_WIRE_H
#include <Python.h>

__attribute__((visibility("hidden"))) extern PyMethodDef shoal_wire_methods[];

#endif
