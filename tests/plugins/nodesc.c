/* A shared object that is not an SMIS plugin: no descriptor exported. */
int not_a_plugin(void);
int not_a_plugin(void) { return 42; }
