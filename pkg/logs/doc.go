// Package logs rotates the log files of running containers by size and count, as the
// kubelet's container log manager does.
//
// The runtime writes each container's stdout and stderr to the log path the pod manager gave
// it (<pod-logs-dir>/<ns>_<name>_<uid>/<container>/<restartCount>.log). The Rotator owns the
// rotated copies beside that file, named <path>.<YYYYMMDD-hhmmss> so that name order is age
// order, and keeps no other state: every pass looks at the files again.
//
//	every Period: list running containers (ID, log path)
//	  for each whose current file is larger than MaxSize:
//	    remove the oldest rotated files, keeping MaxFiles-2 (room for the one made now)
//	    rename <path> -> <path>.<now>          the runtime keeps writing into it (same inode)
//	    CRI ReopenContainerLog(ID)             the runtime creates <path> and writes there
//	      failed? rename it back; the next pass tries again
//
// So no line is lost at the boundary: until the reopen, lines go to the renamed file; after
// it, to the new one. At most MaxFiles files exist per container, the current one included.
// Exited containers are left alone: nothing writes to their files, which `kubectl logs
// --previous` reads whole.
package logs
