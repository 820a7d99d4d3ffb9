#!/usr/bin/env node
// The `ktransport` command: under construction.
process.stdout.write('ktransport: under construction\n');
